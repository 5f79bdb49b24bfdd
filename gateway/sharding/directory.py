"""The customer directory: which shard each customer lives on, kept in the catalog.

A customer's shard is chosen once, when the customer is created, and changes only by an
explicit move; so each process caches what it looked up, without expiry, up to a number of
customers (the least recently used are forgotten first).
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
from cachetools import LRUCache

from gateway.errors import NotFound
from gateway.postgres.queries import query


class CustomerDirectory:
    """Looks customers' shards up in the catalog, remembering each answer."""

    def __init__(self, catalog: asyncpg.Pool, cache_size: int) -> None:
        self._catalog = catalog
        self._shards: LRUCache[UUID, str] = LRUCache(maxsize=cache_size)

    async def shard_of(self, customer_id: UUID) -> str:
        """The customer's shard; ``NotFound`` (field ``customer_id``) if there is no such
        customer."""
        shard = self._shards.get(customer_id)
        if shard is None:
            shard = await self._catalog.fetchval(query("directory_shard_of"), customer_id)
            if shard is None:
                raise NotFound("customer", customer_id, field="customer_id")
            self._shards[customer_id] = shard
        return shard

    async def record(self, customer_id: UUID, shard: str, email: str) -> bool:
        """Enter a new customer; False (nothing written) when the email is taken."""
        entered = await self._catalog.fetchval(query("directory_record"), customer_id, shard, email)
        if entered is None:
            return False
        self._shards[customer_id] = shard
        return True

    def remember(self, customer_id: UUID, shard: str) -> None:
        """Cache ``shard`` as the customer's (it moved there)."""
        self._shards[customer_id] = shard

    async def entry_by_email(self, email: str) -> tuple[UUID, str] | None:
        """The customer id and shard entered for ``email``, if any."""
        row = await self._catalog.fetchrow(query("directory_entry_by_email"), email)
        return (row["customer_id"], row["shard"]) if row is not None else None

    async def forget(self, customer_id: UUID) -> None:
        """Remove an entry whose customer was never created."""
        self._shards.pop(customer_id, None)
        await self._catalog.execute(query("directory_forget"), customer_id)
