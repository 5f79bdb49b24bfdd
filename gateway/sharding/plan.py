"""``fanout shards plan``: how many existing customers the current shards' placement would put
elsewhere than the directory says (what moving them would take; nothing is moved)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from gateway.postgres.queries import query
from gateway.sharding.placement import Shard, rendezvous_shard

PAGE = 10_000


@dataclass(frozen=True)
class Plan:
    """Customers in the directory, and how many the placement would move, from which shard to
    which (a shard no longer configured appears as a source only)."""

    customers: int
    moves: dict[tuple[str, str], int]

    @property
    def moving(self) -> int:
        """Customers the placement would put on another shard."""
        return sum(self.moves.values())


def plan_moves(entries: Iterable[tuple[UUID, str]], shards: Sequence[Shard]) -> Plan:
    """The plan for directory ``entries`` (customer id, shard) under ``shards``."""
    customers = 0
    moves: Counter[tuple[str, str]] = Counter()
    for customer_id, shard in entries:
        customers += 1
        wanted = rendezvous_shard(str(customer_id), shards)
        if wanted != shard:
            moves[(shard, wanted)] += 1
    return Plan(customers, dict(sorted(moves.items())))


async def directory_entries(catalog: asyncpg.Pool) -> list[tuple[UUID, str]]:
    """Every directory entry, read in pages."""
    entries: list[tuple[UUID, str]] = []
    after: UUID | None = None
    while True:
        rows = await catalog.fetch(query("directory_page"), after, PAGE)
        entries.extend((row["customer_id"], row["shard"]) for row in rows)
        if len(rows) < PAGE:
            return entries
        after = rows[-1]["customer_id"]
