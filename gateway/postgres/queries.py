"""Named SQL queries, loaded from the ``.sql`` files of ``gateway/postgres/sql/``.

Each file holds the queries of one owner (the write path, the relay, sharding, ...). A query
starts with a ``-- name: query_name`` line and runs to the next definition; comment lines at
its start (its documentation) and its end (the heading of the next section) are not sent.
A ``-- fragment: fragment_name`` block is SQL that several queries share: a line
``-- include: fragment_name`` in a query is replaced by it, indented as that line. A name is
defined once across the files, or loading fails. The ``migrations/`` subfolder is not read
here.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal

_DEFINITION = re.compile(r"^-- (name|fragment): ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^([ \t]*)-- include: ([a-z_][a-z0-9_]*)[ \t]*$", re.MULTILINE)


class QueryDefinitionError(RuntimeError):
    """The SQL files define a name twice, or include a fragment no file defines."""


@dataclass(frozen=True)
class _Definition:
    kind: Literal["name", "fragment"]
    file: str
    text: str


def queries_in(folder: Traversable) -> dict[str, str]:
    """Every query the ``.sql`` files of ``folder`` (not its subfolders) define, by name, with
    the fragments it includes spliced in."""
    definitions: dict[str, _Definition] = {}
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if not (entry.is_file() and entry.name.endswith(".sql")):
            continue
        for name, definition in _definitions(entry.name, entry.read_text(encoding="utf-8")):
            earlier = definitions.get(name)
            if earlier is not None:
                raise QueryDefinitionError(
                    f"{name!r} is defined twice: {earlier.file} and {definition.file}"
                )
            definitions[name] = definition
    fragments = {name: d for name, d in definitions.items() if d.kind == "fragment"}
    for name, fragment in fragments.items():
        if _INCLUDE.search(fragment.text):
            raise QueryDefinitionError(
                f"fragment {name!r} ({fragment.file}) includes another: fragments do not nest"
            )
    return {
        name: _compose(name, definition, fragments)
        for name, definition in definitions.items()
        if definition.kind == "name"
    }


def _definitions(file: str, text: str) -> list[tuple[str, _Definition]]:
    matches = list(_DEFINITION.finditer(text))
    found = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        kind: Literal["name", "fragment"] = "name" if match.group(1) == "name" else "fragment"
        body = _without_trailing_comments(text[match.end() : end])
        if kind == "name":
            body = _without_leading_comments(body)
        found.append((match.group(2), _Definition(kind, file, body)))
    return found


def _without_trailing_comments(body: str) -> str:
    lines = body.strip().splitlines()
    while lines and (
        not lines[-1].strip()
        or (lines[-1].lstrip().startswith("--") and not _INCLUDE.fullmatch(lines[-1]))
    ):
        lines.pop()
    return "\n".join(lines)


def _without_leading_comments(body: str) -> str:
    # The comment lines opening a query document it here; sent, they would stand first where
    # tools name a statement by its first word (a trace's statement spans).
    lines = body.splitlines()
    while lines and lines[0].lstrip().startswith("--") and not _INCLUDE.fullmatch(lines[0]):
        lines.pop(0)
    return "\n".join(lines)


def _compose(name: str, query: _Definition, fragments: dict[str, _Definition]) -> str:
    def splice(include: re.Match[str]) -> str:
        indent, fragment = include.group(1), include.group(2)
        if fragment not in fragments:
            raise QueryDefinitionError(
                f"query {name!r} ({query.file}) includes {fragment!r}, which no file defines "
                "as a fragment"
            )
        return textwrap.indent(fragments[fragment].text, indent)

    return _INCLUDE.sub(splice, query.text)


@cache
def _all_queries() -> dict[str, str]:
    return queries_in(files("gateway.postgres.sql"))


def query(name: str) -> str:
    """The SQL text of the named query."""
    try:
        return _all_queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in gateway/postgres/sql/") from None
