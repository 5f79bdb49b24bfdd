"""Prometheus metrics of the HTTP API."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "fanout_http_requests",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "fanout_http_request_seconds",
    "Time to answer an HTTP request, by route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ORDERS_PLACED = Counter("fanout_orders_placed", "Orders created through the API")
ORDERS_REPLAYED = Counter(
    "fanout_orders_replayed", "Order requests answered from an earlier idempotency key"
)
ORDER_TRANSITIONS = Counter(
    "fanout_order_transitions", "Status transitions made through the API, by new status", ["status"]
)
