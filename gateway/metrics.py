"""Prometheus metrics of the relay (labelled by sink) and of reads from replicas."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_DELIVERED = Counter(
    "fanout_events_delivered", "Events applied by a sink (including replays)", ["sink"]
)
EVENTS_FAILED = Counter(
    "fanout_events_failed", "Failed attempts to apply an event, by kind", ["sink", "kind"]
)
EVENTS_DEAD_LETTERED = Counter(
    "fanout_events_dead_lettered", "Events moved to a sink's dead letters", ["sink"]
)
BATCH_SECONDS = Histogram(
    "fanout_batch_seconds",
    "Time for a sink to apply one batch",
    ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERY_LAG_SECONDS = Histogram(
    "fanout_delivery_lag_seconds",
    "From an event's transaction start to its application by a sink",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BACKLOG = Gauge("fanout_backlog_events", "Events not yet delivered to a sink", ["sink"])
OLDEST_UNDELIVERED_SECONDS = Gauge(
    "fanout_oldest_undelivered_seconds", "Age of a sink's oldest undelivered event", ["sink"]
)
OWNED_PARTITIONS = Gauge(
    "fanout_owned_partitions", "Outbox partitions this relay holds a lease on", ["sink"]
)
READS = Counter("fanout_reads", "Reads served, by where: a replica or the primary", ["target"])
TOKEN_WAIT_EXPIRED = Counter(
    "fanout_token_waits_expired",
    "Reads whose replica had not replayed their consistency token in time (served by the primary)",
)
# Set by every API worker: with several, the newest value of any of them is the one shown.
REPLICA_USABLE = Gauge(
    "fanout_replica_in_use",
    "1 while a replica serves reads without a token, else 0",
    ["replica"],
    multiprocess_mode="mostrecent",
)
REPLICA_LAG_SECONDS = Gauge(
    "fanout_replica_lag_seconds",
    "A replica's replay lag as last measured",
    ["replica"],
    multiprocess_mode="mostrecent",
)
