"""Named SQL queries, loaded from ``gateway/postgres/sql/queries.sql``.

Each query in that file starts with a ``-- name: query_name`` line and runs to the next one.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_NAME_LINE = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@cache
def _all_queries() -> dict[str, str]:
    text = (files("gateway.postgres.sql") / "queries.sql").read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in queries:
            raise RuntimeError(f"query {name!r} is defined twice in queries.sql")
        queries[name] = body
    return queries


def query(name: str) -> str:
    """The SQL text of the named query."""
    try:
        return _all_queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in queries.sql") from None
