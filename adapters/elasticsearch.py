"""Elasticsearch: a searchable document per order in the ``orders`` index.

Version guard: external versioning. Each document is indexed with the order's version as its
external version; Elasticsearch refuses (409) a version not higher than the stored one, which
means the event is already applied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError, AsyncElasticsearch

from adapters.base import Delivery, EventEnvelope, Health, Projections
from adapters.projections import ORDER_EVENT_TYPES, ProjectionError
from adapters.readback import OrderSpan, ProjectedOrder

MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "order_id": {"type": "keyword"},
        "customer_id": {"type": "keyword"},
        "status": {"type": "keyword"},
        "total_amount": {"type": "double"},
        "total": {"type": "keyword", "index": False},
        "created_at": {"type": "date"},
        "version": {"type": "integer"},
    },
}


def search_document(event: EventEnvelope) -> dict[str, Any]:
    """order_id, customer_id, status, total_amount and created_at (plus version)."""
    payload = event.payload
    try:
        total = payload["total_amount"]
        return {
            "order_id": event.aggregate_id,
            "customer_id": payload["customer_id"],
            "status": payload["status"],
            "total_amount": float(total),
            "total": str(total),
            "created_at": payload["created_at"],
            "version": event.version,
        }
    except (KeyError, TypeError, ValueError) as error:
        raise ProjectionError(f"cannot index order event: {error!r}") from None


def default_projections() -> Projections[dict[str, Any]]:
    """Order events projected to their search documents."""
    projections: Projections[dict[str, Any]] = Projections()
    for event_type in ORDER_EVENT_TYPES:
        projections.register(event_type, search_document)
    return projections


def classify_status(status: int, error: str) -> Delivery:
    """429 and 5xx are transient; 409 is handled by the caller; other 4xx are permanent."""
    if status == 429 or status >= 500:
        return Delivery.transient(f"HTTP {status}: {error}")
    return Delivery.permanent(f"HTTP {status}: {error}")


def classify(error: Exception) -> Delivery:
    """A failed request as a whole, by the client's own exception types."""
    if isinstance(error, ApiError):
        return classify_status(error.meta.status, str(error.message))
    if isinstance(error, TransportConnectionError | ConnectionTimeout | TransportError):
        return Delivery.transient(f"{type(error).__name__}: {error}")
    return Delivery.transient(f"{type(error).__name__}: {error}")


class ElasticsearchSink:
    """Bulk-indexes order documents with external versions."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        index: str = "orders",
        timeout_seconds: float = 10.0,
        api_key: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_certs: str | None = None,
        verify_certs: bool = True,
        projections: Projections[dict[str, Any]] | None = None,
    ) -> None:
        self._name = name
        self.index = index
        tls: dict[str, Any] = {"ca_certs": ca_certs} if ca_certs else {}
        self._client = AsyncElasticsearch(
            url,
            api_key=api_key,
            basic_auth=basic_auth,
            verify_certs=verify_certs,
            request_timeout=timeout_seconds,
            max_retries=0,
            retry_on_timeout=False,
            **tls,
        )
        self.projections = projections if projections is not None else default_projections()

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    @property
    def client(self) -> AsyncElasticsearch:
        """The Elasticsearch client (for readers of the projection)."""
        return self._client

    async def start(self) -> None:
        """Create the index with its explicit mapping unless it exists."""
        if not await self._client.indices.exists(index=self.index):
            try:
                await self._client.indices.create(index=self.index, mappings=MAPPING)
            except ApiError as error:
                if error.meta.status != 400 or "already_exists" not in str(error.message):
                    raise

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()

    async def health(self) -> Health:
        """Ask for the cluster's health: green or yellow is up."""
        try:
            response = await self._client.cluster.health(timeout="2s")
        except (ApiError, TransportError) as error:
            return Health(False, f"{type(error).__name__}: {error}")
        status = str(response.body.get("status"))
        return Health(status in {"green", "yellow"}, f"cluster {status}")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        """One ``_bulk`` request; a 409 on an item means a newer version is stored."""
        results: list[Delivery] = [Delivery.ok()] * len(batch)
        operations: list[dict[str, Any]] = []
        sent: list[int] = []
        for index, document in self.projections.project_batch(batch, results):
            operations.append(
                {
                    "index": {
                        "_index": self.index,
                        "_id": document["order_id"],
                        "version": document["version"],
                        "version_type": "external",
                    }
                }
            )
            operations.append(document)
            sent.append(index)
        if not sent:
            return results
        try:
            response = await self._client.bulk(operations=operations)
        except (ApiError, TransportError) as error:
            outcome = classify(error)
            for index in sent:
                results[index] = outcome
            return results
        for index, item in zip(sent, response.body["items"], strict=True):
            outcome = item["index"]
            status = int(outcome.get("status", 500))
            if status >= 300 and status != 409:
                reason = outcome.get("error", {})
                message = f"{reason.get('type')}: {reason.get('reason')}"
                results[index] = classify_status(status, message)
        return results

    async def projected_orders(self, orders: Mapping[str, OrderSpan]) -> dict[str, ProjectedOrder]:
        """The indexed version, status and total of each of the ``orders``."""
        response = await self._client.mget(
            index=self.index, ids=list(orders), source_includes=["version", "status", "total"]
        )
        return {
            doc["_id"]: ProjectedOrder(
                doc["_source"]["version"], doc["_source"]["status"], doc["_source"]["total"]
            )
            for doc in response.body["docs"]
            if doc.get("found")
        }

    async def projected_ids(self, batch_size: int) -> AsyncIterator[list[str]]:
        """Every indexed order id, in batches (``search_after`` on ``order_id``)."""
        # Search sees what the last refresh made visible; verification wants everything.
        await self._client.indices.refresh(index=self.index)
        after: list[Any] | None = None
        while True:
            response = await self._client.search(
                index=self.index,
                size=batch_size,
                sort=[{"order_id": "asc"}],
                source=False,
                search_after=after,
                query={"match_all": {}},
            )
            hits = response.body["hits"]["hits"]
            if not hits:
                return
            yield [hit["_id"] for hit in hits]
            after = hits[-1]["sort"]
