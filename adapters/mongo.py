"""MongoDB: one document per order in the ``orders`` collection, with PyMongo's asyncio API.

Version guard: a batch is first reduced to the newest event per order. An order's first
version (1) is inserted: a document already there (a duplicate key) holds that version or a
newer one, so the event is already applied. For later versions the stored versions are read,
events not newer than what is stored count as applied, and the rest are upserted with a filter
on ``version < new``. Correctness rests on that filter, not on the read: if a version as new or
newer is stored (another writer, or a read that did not yet see a write), the upsert's insert
collides on ``_id``, which again means already applied.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from adapters.base import Delivery, EventEnvelope, Health, Projections
from adapters.key_locks import KeyLocks
from adapters.projections import ORDER_EVENT_TYPES, order_document
from adapters.readback import OrderSpan, ProjectedOrder

log = logging.getLogger("adapters.mongo")

DUPLICATE_KEY = 11000
INTERNAL_ERROR = 1
# Server error codes that a retry can outlive (elections, shutdowns, time limits). An internal
# error says nothing wrong of the write itself: FerretDB answers every write with one while its
# PostgreSQL backend restarts, so it is retried (and dead-lettered only once out of attempts).
TRANSIENT_CODES = frozenset(
    {INTERNAL_ERROR, 6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
# FerretDB 1.x holds a backend connection for each update of a command until the whole command
# ends, and its pool (50 connections on PostgreSQL, 100 on SQLite) is shared by every client: a
# command with more updates than the pool has free never finishes, and the server stops
# answering. Ten per request keeps two relays with two batches in flight each under 50; the
# size of an update request does not change FerretDB's rate of upserts (measured: 45/s on
# SQLite and about 600/s on PostgreSQL from 5 to 25 per request).
FERRETDB_UPDATES_PER_REQUEST = 10


def default_projections() -> Projections[dict[str, Any]]:
    """Order events projected to the full order document."""
    projections: Projections[dict[str, Any]] = Projections()
    for event_type in ORDER_EVENT_TYPES:
        projections.register(event_type, order_document)
    return projections


def update_request_limit(build_info: Mapping[str, Any], bulk_size: int) -> int:
    """How many guarded upserts one request may carry on the server that answered
    ``build_info``: ``bulk_size``, and on FerretDB at most ``FERRETDB_UPDATES_PER_REQUEST``."""
    if "ferretdbVersion" in build_info:
        return min(bulk_size, FERRETDB_UPDATES_PER_REQUEST)
    return bulk_size


def classify(error: PyMongoError) -> Delivery:
    """Transient for lost connections, timeouts and retryable server errors; else permanent."""
    if isinstance(error, ConnectionFailure | ExecutionTimeout | WTimeoutError):
        return Delivery.transient(f"{type(error).__name__}: {error}")
    if isinstance(error, OperationFailure):
        if error.code in TRANSIENT_CODES or error.has_error_label("RetryableWriteError"):
            return Delivery.transient(f"code {error.code}: {error}")
        return Delivery.permanent(f"code {error.code}: {error}")
    return Delivery.transient(f"{type(error).__name__}: {error}")


class MongoSink:
    """Upserts order documents, version-guarded, with unordered bulk writes."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        database: str = "fanout",
        collection: str = "orders",
        bulk_size: int = 1_000,
        timeout_seconds: float = 10.0,
        projections: Projections[dict[str, Any]] | None = None,
    ) -> None:
        self._name = name
        self.bulk_size = bulk_size
        timeout_ms = int(timeout_seconds * 1000)
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            retryWrites=True,
        )
        self.collection = self._client[database][collection]
        self.projections = projections if projections is not None else default_projections()
        self._writing = KeyLocks()
        self._updates_per_request: int | None = None

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    async def start(self) -> None:
        """Create the indexes the projection's readers use (idempotent), and learn how many
        upserts the server takes per request."""
        await self.collection.create_index([("customer_id", ASCENDING)])
        await self.collection.create_index([("status", ASCENDING)])
        await self.collection.create_index([("created_at", ASCENDING)])
        await self.updates_per_request()

    async def updates_per_request(self) -> int:
        """How many guarded upserts go in one request to this server (asked once)."""
        if self._updates_per_request is None:
            build_info = await self._client.admin.command("buildInfo")
            self._updates_per_request = update_request_limit(build_info, self.bulk_size)
            if self._updates_per_request < self.bulk_size:
                log.info(
                    "%s: the server is FerretDB %s; at most %d upserts per request",
                    self.name,
                    build_info["ferretdbVersion"],
                    self._updates_per_request,
                )
        return self._updates_per_request

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()

    async def health(self) -> Health:
        """Ping the server."""
        try:
            await self._client.admin.command("ping")
        except PyMongoError as error:
            return Health(False, f"{type(error).__name__}: {error}")
        return Health(True, "ping ok")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        """Write the newest document of each order in the batch, version-guarded.

        Two batches applied at once (``relay.batches_in_flight``) never write the same order
        at the same time: the version guard needs each conditional update to be atomic, which
        MongoDB's are and FerretDB's are not (two concurrent guarded updates of one document
        can both pass the guard, and the older one land last).
        """
        results: list[Delivery] = [Delivery.ok()] * len(batch)
        newest: dict[str, tuple[int, dict[str, Any]]] = {}
        for index, document in self.projections.project_batch(batch, results):
            key = document["order_id"]
            if key not in newest or newest[key][1]["version"] < document["version"]:
                newest[key] = (index, document)
        async with self._writing.holding(newest):
            await self._write_newest(newest, results)
        return results

    async def _write_newest(
        self, newest: dict[str, tuple[int, dict[str, Any]]], results: list[Delivery]
    ) -> None:
        # An order's first version creates its document; a document already there holds
        # that version or a newer one, so only later versions need the stored versions read.
        creations = [write for write in newest.values() if write[1]["version"] == 1]
        changes = [write for write in newest.values() if write[1]["version"] > 1]
        upserts: list[tuple[int, dict[str, Any]]] = []
        if changes:
            try:
                stored = await self._stored_versions([d["order_id"] for _, d in changes])
            except PyMongoError as error:
                # Only the changes waited on this read; every other event keeps its outcome.
                outcome = classify(error)
                for index, _ in changes:
                    results[index] = outcome
            else:
                upserts = [
                    (i, d) for i, d in changes if stored.get(d["order_id"], 0) < d["version"]
                ]
        for start in range(0, len(creations), self.bulk_size):
            upserts += await self._bulk_insert(creations[start : start + self.bulk_size], results)
        if not upserts:
            return
        try:
            per_request = await self.updates_per_request()
        except PyMongoError as error:
            outcome = classify(error)
            for index, _ in upserts:
                results[index] = outcome
            return
        for start in range(0, len(upserts), per_request):
            await self._bulk_upsert(upserts[start : start + per_request], results)

    async def _bulk_insert(
        self, creations: list[tuple[int, dict[str, Any]]], results: list[Delivery]
    ) -> list[tuple[int, dict[str, Any]]]:
        """One bulk request of first versions; records each outcome in ``results``, except for
        the writes it returns, whose outcome the reply did not tell."""
        try:
            await self.collection.insert_many(
                [{"_id": document["order_id"], **document} for _, document in creations],
                ordered=False,
            )
        except BulkWriteError as error:
            for failure in error.details.get("writeErrors", []):
                index = creations[failure["index"]][0]
                if failure.get("code") != DUPLICATE_KEY:  # a duplicate: already applied
                    results[index] = classify(
                        OperationFailure(failure.get("errmsg", ""), failure.get("code"))
                    )
        except PyMongoError as error:
            outcome = classify(error)
            for index, _ in creations:
                results[index] = outcome
        except Exception as error:
            # FerretDB answers an unordered batch with a write error in a form the driver
            # cannot read; the guarded upserts then give each write its own outcome.
            log.info("%s: unreadable bulk insert reply (%r); writing one by one", self.name, error)
            return creations
        return []

    async def _bulk_upsert(
        self, writes: list[tuple[int, dict[str, Any]]], results: list[Delivery]
    ) -> None:
        """One bulk request of guarded upserts; records each write's outcome in ``results``."""
        guarded = [
            (
                index,
                {"_id": document["order_id"], "version": {"$lt": document["version"]}},
                {"$set": document},
            )
            for index, document in writes
        ]
        try:
            await self.collection.bulk_write(
                [UpdateOne(filter_, update, upsert=True) for _, filter_, update in guarded],
                ordered=False,
            )
        except BulkWriteError as error:
            for failure in error.details.get("writeErrors", []):
                index = guarded[failure["index"]][0]
                if failure.get("code") != DUPLICATE_KEY:
                    results[index] = classify(
                        OperationFailure(failure.get("errmsg", ""), failure.get("code"))
                    )
        except PyMongoError as error:
            outcome = classify(error)
            for index, _, _ in guarded:
                results[index] = outcome
        except Exception as error:
            # The server answered the bulk write in a form the driver cannot read (FerretDB
            # does, when an unordered batch has a write error): apply each write on its own,
            # each with its own, well-formed outcome. MongoDB never takes this path.
            log.info("%s: unreadable bulk write reply (%r); writing one by one", self.name, error)
            for index, filter_, update in guarded:
                results[index] = await self._write_one(filter_, update)

    async def _write_one(self, filter_: dict[str, Any], update: dict[str, Any]) -> Delivery:
        try:
            await self.collection.update_one(filter_, update, upsert=True)
        except DuplicateKeyError:
            return Delivery.ok()  # a version as new or newer is already stored
        except PyMongoError as error:
            return classify(error)
        return Delivery.ok()

    async def _stored_versions(self, keys: list[str]) -> dict[str, int]:
        cursor = self.collection.find({"_id": {"$in": keys}}, {"version": 1})
        return {document["_id"]: document.get("version", 0) async for document in cursor}

    async def projected_orders(self, orders: Mapping[str, OrderSpan]) -> dict[str, ProjectedOrder]:
        """The stored version, status and total of each of the ``orders``."""
        cursor = self.collection.find(
            {"_id": {"$in": list(orders)}}, {"version": 1, "status": 1, "totals": 1}
        )
        return {
            document["_id"]: ProjectedOrder(
                document["version"], document["status"], document["totals"]["total_amount"]
            )
            async for document in cursor
        }

    async def projected_ids(self, batch_size: int) -> AsyncIterator[list[str]]:
        """Every stored order id, in batches."""
        batch: list[str] = []
        async for document in self.collection.find({}, {"_id": 1}).sort("_id", ASCENDING):
            batch.append(document["_id"])
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
