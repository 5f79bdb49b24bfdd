"""The sinks the outbox tracks, as operators see them: status, listing, warnings."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict
from typing import Any

from gateway.postgres.database import Connection
from gateway.relay import tables


async def registered_sinks(
    connection: Connection, configured: Collection[str]
) -> list[dict[str, Any]]:
    """Every sink with positions: its totals, and whether ``configured`` names it."""
    return [
        asdict(sink) | {"configured": sink.sink in configured}
        for sink in await tables.sink_totals(connection)
    ]


def unserved_warnings(rows: Sequence[dict[str, object]], configured: Collection[str]) -> list[str]:
    """A warning for each sink of ``rows`` (``sink_status_rows``) that no relay serves and the
    configuration does not name: it holds back pruning until it is retired."""
    warnings = []
    for row in rows:
        unserved_for = row["unserved_seconds"]
        if isinstance(unserved_for, float) and row["sink"] not in configured:
            warnings.append(tables.unserved_warning(str(row["sink"]), unserved_for))
    return warnings
