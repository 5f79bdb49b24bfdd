"""Configuration: a YAML file, every value overridable by a ``FANOUT_``-prefixed variable.

``FANOUT_POSTGRES_URL`` overrides ``postgres.url``; ``FANOUT_POSTGRES_POOL_MAX_SIZE`` overrides
``postgres.pool_max_size``: the first underscore after the prefix separates the section from
the key. Errors name the key and the file (or environment variable) it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from adapters.kafka_url import bootstrap_servers
from gateway.configuration.interpolation import MissingVariable, interpolate
from gateway.configuration.postgres_urls import hosts_of, writable_url_problem
from gateway.configuration.secrets import SecretUrl
from gateway.configuration.sink_environment import (
    sink_variable,
    unmatched_variables,
    with_overrides,
)
from gateway.errors import ConfigError
from gateway.order_ids import shard_tag

ENV_PREFIX = "FANOUT_"
CONFIG_PATH_VARIABLE = "FANOUT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/gateway.yaml")
MIN_API_KEY_LENGTH = 16
GRPC_METADATA_NAME = re.compile(r"[a-z0-9_.-]+")
GRPC_METADATA_VALUE = re.compile(r"[\x20-\x7e]*")
_ECHOED_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
OTLP_ENDPOINT = re.compile(r"https?://[^/@?#\s]+/?", re.IGNORECASE)


class _Section(BaseModel):
    # The input of a refused value can be a URL with its password: errors name the key only.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


ShardName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]


class ShardSettings(_Section):
    """One shard of sharded mode: a PostgreSQL database of its own, its relative weight (its
    share of new customers) and its streaming replicas."""

    url: SecretUrl
    """The shard's PostgreSQL URL: a database of its own."""
    weight: float = Field(default=1.0, gt=0, le=1000)
    """The shard's relative share of new customers."""
    replicas: Annotated[list[SecretUrl], NoDecode] = Field(default_factory=list)
    """URLs of the shard's streaming replicas, which serve reads of its customers and orders
    as ``postgres.replicas`` do in one database, under the same ``postgres.replica_*``
    settings (a list, or one comma-separated string)."""

    @field_validator("url")
    @classmethod
    def _writable(cls, url: SecretUrl) -> SecretUrl:
        return writable_url(url)

    @field_validator("replicas", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return comma_separated(value)


def comma_separated(value: object) -> object:
    """A list of the items of a comma-separated string (blanks dropped); anything else as is."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def writable_url(url: SecretUrl) -> SecretUrl:
    """``url``, if writes can go to it; a ValueError saying why not."""
    problem = writable_url_problem(url.get_secret_value())
    if problem is not None:
        raise ValueError(problem)
    return url


class PostgresSettings(_Section):
    """Connection to the PostgreSQL database that holds orders and the outbox, and to its
    streaming replicas, which serve reads (``FANOUT_POSTGRES_REPLICAS``: comma-separated).

    With ``shards``, the gateway runs in sharded mode: ``url`` is the catalog (products,
    inventory, the customer directory and inventory reservations; it has no replicas) and
    each shard holds its customers, their orders and its own outbox, and may have streaming
    replicas of its own (``FANOUT_POSTGRES_SHARDS``: a JSON object).
    """

    url: SecretUrl
    """The PostgreSQL URL (in sharded mode, the catalog's). A cluster's nodes may be listed
    (``postgresql://user:password@h1:5432,h2:5432/db?target_session_attrs=read-write``): the
    pools connect to whichever is the primary, and find the new one after a failover."""
    pool_min_size: int = Field(default=1, ge=0)
    """Connections the asyncpg pool keeps open at least."""
    pool_max_size: int = Field(default=10, ge=1)
    """Connections the asyncpg pool opens at most."""
    command_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long one statement may run before it is cancelled."""
    replicas: Annotated[list[SecretUrl], NoDecode] = Field(default_factory=list)
    """URLs of streaming replicas that serve reads, each with its own pool
    (``FANOUT_POSTGRES_REPLICAS``: comma-separated); in sharded mode, each shard lists its own
    (``shards.<name>.replicas``) and this stays empty."""
    replica_max_lag_seconds: float = Field(default=5.0, gt=0)
    """A read without a consistency token goes to a replica only while its measured lag is under
    this."""
    replica_wait_ms: int = Field(default=200, ge=0, le=10_000)
    """How long a read with a consistency token waits for a replica to replay it before going to the
    primary."""
    replica_check_interval_seconds: float = Field(default=1.0, gt=0)
    """How often each replica's state and lag are measured (in the background)."""
    read_from_standbys: bool = False
    """Reads go to the hosts of a multi-host ``url`` while they are streaming standbys, as to
    configured replicas: a host promoted is left alone, and one that rejoins as a standby is
    used again."""
    shards: dict[ShardName, ShardSettings] = Field(default_factory=dict)
    """Sharded mode: ``name: {url, weight, replicas}`` per shard (names ``[a-z][a-z0-9_-]*``,
    never renamed once orders exist); ``url`` is then the catalog, which has no replicas
    (``FANOUT_POSTGRES_SHARDS``: a JSON object)."""
    reservation_seconds: float = Field(default=60.0, gt=0, le=86_400)
    """How long an inventory reservation of sharded mode may stay open before the sweeper
    settles it (commits it if its order exists, else releases its units)."""
    shard_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    """How long a query over every shard (a report) waits for each before calling it missing."""
    directory_cache_size: int = Field(default=100_000, ge=1)
    """How many customers' shards each process of sharded mode remembers (the least recently
    used are forgotten first, and looked up in the catalog again when needed; about 26 MB at the
    default)."""

    @field_validator("url")
    @classmethod
    def _writable(cls, url: SecretUrl) -> SecretUrl:
        return writable_url(url)

    @field_validator("read_from_standbys")
    @classmethod
    def _cluster_url(cls, read: bool, info: pydantic.ValidationInfo) -> bool:
        url = info.data.get("url")
        if read and url is not None and len(hosts_of(url.get_secret_value())) < 2:
            raise ValueError("needs a postgres.url that lists the cluster's hosts (h1:p1,h2:p2)")
        return read

    @field_validator("replicas", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return comma_separated(value)

    @field_validator("shards")
    @classmethod
    def _shards_are_distinct(
        cls, shards: dict[str, ShardSettings], info: pydantic.ValidationInfo
    ) -> dict[str, ShardSettings]:
        if not shards:
            return shards
        if info.data.get("replicas") or info.data.get("read_from_standbys"):
            raise ValueError(
                "in sharded mode replicas are each shard's (postgres.shards.<name>.replicas); "
                "the catalog has none"
            )
        catalog = info.data.get("url")
        urls = [catalog.get_secret_value()] if catalog is not None else []
        tags: dict[int, str] = {}
        for name, shard in shards.items():
            if name == "catalog":
                raise ValueError("a shard may not be called 'catalog', the catalog's name")
            url = shard.url.get_secret_value()
            if url in urls:
                raise ValueError(
                    f"shard {name!r} has the URL of the catalog or of another shard; "
                    "each shard needs a database of its own"
                )
            urls.append(url)
            tag = shard_tag(name)
            if tag in tags:
                raise ValueError(
                    f"shards {tags[tag]!r} and {name!r} hash to the same order-id tag; "
                    "rename one of them"
                )
            tags[tag] = name
        return shards


class PricingSettings(_Section):
    """The pricing policy applied by ``place_order``."""

    tax_rate: Decimal = Field(default=Decimal("0.08"), ge=0, le=1)
    """Tax on the subtotal, rounded half up to cents."""
    shipping_flat: Decimal = Field(default=Decimal("5.00"), ge=0)
    """Shipping charged below ``free_shipping_threshold``."""
    free_shipping_threshold: Decimal | None = Field(default=Decimal("100.00"), ge=0)
    """Subtotal from which shipping is free (``null``: never)."""
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    """ISO 4217 code stored on orders."""


class OrderSettings(_Section):
    """Limits on what one order may contain, how order numbers look, and how long a placed
    order waits for its payment."""

    max_items: int = Field(default=100, ge=1)
    """Lines per order (hard limit 1000)."""
    max_quantity: int = Field(default=10_000, ge=1)
    """Units per line."""
    number_prefix: str = Field(default="ORD", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    """Prefix of ``order_number`` (``ORD-YYYYMMDD-NNNNNNNN``)."""
    payment_timeout_seconds: float | None = Field(default=900.0, gt=0)
    """An order still unpaid this long after it was placed is cancelled and its units
    returned (by the relay's sweeper); ``null`` turns payment off: orders wait in ``pending``
    until a caller moves them."""


class PaymentsSettings(_Section):
    """How payment notifications (``POST /webhooks/payments``) are authenticated.

    ``webhook_secret`` is one secret or several (a list, or comma-separated in
    ``FANOUT_PAYMENTS_WEBHOOK_SECRET``): a signature made with any of them is accepted, so a
    provider's secret can be rotated without a gap. With none, the webhook answers 404.
    """

    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Secret(s) of ``POST /webhooks/payments``, 16+ characters each: one, a list, or comma-
    separated in ``FANOUT_PAYMENTS_WEBHOOK_SECRET``; none: the webhook answers 404."""
    tolerance_seconds: int = Field(default=300, ge=1, le=86_400)
    """How far a notification's signed time may be from the server's clock."""

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _one_or_several(cls, value: object) -> object:
        if isinstance(value, str):
            return [secret.strip() for secret in value.split(",") if secret.strip()]
        if isinstance(value, SecretStr):
            return [value]
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _long_enough(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for secret in secrets:
            if len(secret.get_secret_value()) < MIN_API_KEY_LENGTH:
                raise ValueError(f"every secret must be at least {MIN_API_KEY_LENGTH} characters")
        return secrets


class EventsSettings(_Section):
    """How long every order's event history is kept (``null``: for good)."""

    retention_days: int | None = Field(default=None, ge=1)
    """Days order events are kept in the history (``null``: for good)."""


class IdempotencySettings(_Section):
    """How long an idempotency key is remembered."""

    retention_seconds: int = Field(default=86_400, gt=0)
    """How long a key is remembered; expired keys may be reused."""


StartFrom = Literal["beginning", "now"]


class RelaySettings(_Section):
    """How the relay claims, batches, retries and prunes."""

    batch_size: int = Field(default=500, ge=1, le=10_000)
    """Events read and applied per batch."""
    linger_ms: int = Field(default=5, ge=0, le=10_000)
    """Wait after a wake-up so that a burst of commits forms one batch."""
    read_ahead_batches: int = Field(default=2, ge=1, le=16)
    """Full batches read ahead of each sink while one is applied, shared by the sinks that keep
    pace."""
    batches_in_flight: int = Field(default=2, ge=1, le=16)
    """Batches of one sink being applied at once; 1 applies one at a time."""
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    """Fallback poll when no NOTIFY arrives."""
    lease_ttl_seconds: float = Field(default=10.0, gt=0)
    """How long the partitions of a relay that is alive but silent (hung) stay leased before
    others take them; a relay whose process ended loses them at the next session check."""
    session_check_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    """How often each relay looks for relays whose PostgreSQL session ended (their process
    died) to release their leases at once; also how soon it sees a relay join or leave."""
    max_attempts: int = Field(default=10, ge=1)
    """Attempts before a transiently failing event is dead-lettered (while its store is up)."""
    apply_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How long a sink may take to apply a batch (or to start) before the call counts as a
    transient failure; a worker stuck in one a lease's life longer gives its partitions up."""
    backoff_initial_seconds: float = Field(default=0.1, gt=0)
    """First delay of the exponential backoff (full jitter) between retries."""
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    """Longest delay of the exponential backoff between retries."""
    database_retry_max_seconds: float = Field(default=1.0, gt=0, le=60)
    """Longest pause between attempts to reach PostgreSQL again (a restart, a failover):
    attempts are cheap, and delivery resumes within this of PostgreSQL taking writes again."""
    start_from: StartFrom = "beginning"
    """Where a newly added sink starts: ``beginning`` (every event kept) or ``now``."""
    retention_seconds: int = Field(default=7 * 86_400, gt=0)
    """Age after which events every sink has passed are pruned."""
    prune_interval_seconds: float = Field(default=60.0, gt=0)
    """How often a relay prunes the outbox, and the history past ``events.retention_days`` (one
    relay at a time, by advisory lock)."""
    payment_sweep_interval_seconds: float = Field(default=5.0, gt=0)
    """How often the relay cancels orders whose payment timed out."""
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)
    """Bound on finishing in-flight batches at shutdown."""
    stats_interval_seconds: float = Field(default=5.0, gt=0)
    """How often the backlog gauges are refreshed (only with ``--metrics-port``)."""

    @field_validator("session_check_interval_seconds")
    @classmethod
    def _check_sessions_within_a_lease(cls, value: float, info: pydantic.ValidationInfo) -> float:
        ttl = info.data.get("lease_ttl_seconds")
        if ttl is not None and value >= ttl:
            raise ValueError(
                f"must be shorter than relay.lease_ttl_seconds ({ttl} s), or a dead relay's "
                "partitions wait for their lease to expire anyway"
            )
        return value


class _SinkSection(_Section):
    """What every sink takes, whatever its type."""

    enabled: bool = True
    """Whether relays deliver to this sink."""
    start_from: StartFrom | None = None
    """Where this sink starts when it is new (default: ``relay.start_from``)."""
    timeout_seconds: float = Field(default=10.0, gt=0)
    """Connect and request timeout of the sink's client."""
    apply_timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    """Overrides ``relay.apply_timeout_seconds`` for this sink."""


class MemorySinkSettings(_SinkSection):
    """The in-process sink (tests and demos)."""

    type: Literal["memory"]
    journal_path: Path | None = None
    """Append every delivery to this JSON-lines file."""
    delay_seconds: float = Field(default=0.0, ge=0)
    """Slow each batch down by this long."""


class MongoSinkSettings(_SinkSection):
    """MongoDB: one document per order. TLS and credentials go in the URL's options."""

    type: Literal["mongodb"]
    url: SecretUrl
    """The MongoDB URL."""
    database: str = Field(default="fanout", min_length=1)
    """The database holding the collection."""
    collection: str = Field(default="orders", min_length=1)
    """The collection of order documents."""
    bulk_size: int = Field(default=1_000, gt=0)
    """Most writes per bulk request (on FerretDB at most 10 upserts per request, whatever this
    says)."""


class RedisSinkSettings(_SinkSection):
    """Redis: a JSON summary per order under ``<key_prefix><order id>`` with a TTL.

    Use ``rediss://`` for TLS and ``redis://user:password@host`` for credentials.
    """

    type: Literal["redis"]
    url: SecretUrl
    """The Redis URL (``rediss://`` for TLS)."""
    key_prefix: str = "order:"
    """Prefix of each order's key."""
    ttl_seconds: int = Field(default=3600, gt=0)
    """How long an order's summary lives after its last write."""
    cluster: bool = False
    """Redis Cluster: the URL names any one node; keys are written one hash slot per call."""
    wait_for_replicas: int = Field(default=0, ge=0)
    """Count a batch as delivered only once this many replicas of each master written have
    it (``WAIT``), so that a failover loses nothing delivered."""


class ElasticsearchSinkSettings(_SinkSection):
    """Elasticsearch: a searchable document per order; external versioning."""

    type: Literal["elasticsearch"]
    url: SecretUrl
    """The Elasticsearch URL."""
    index: str = Field(default="orders", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    """The index of order documents (created with a strict mapping)."""
    api_key: SecretStr | None = None
    """An API key to authenticate with (instead of ``username``/``password``)."""
    username: str | None = None
    """The user name of basic authentication."""
    password: SecretStr | None = None
    """The password of basic authentication."""
    ca_certs: Path | None = None
    """A CA bundle to verify the server's certificate with."""
    verify_certs: bool = True
    """Verify the server's TLS certificate."""


class InfluxSinkSettings(_SinkSection):
    """InfluxDB: a point per order event, over the v1 (/write) or v2 (/api/v2/write) API."""

    type: Literal["influxdb"]
    url: SecretUrl
    """The InfluxDB URL."""
    api: Literal["v1", "v2"] = "v1"
    """The write API: ``v1`` (``/write``) or ``v2`` (``/api/v2/write``)."""
    measurement: str = "order_metrics"
    """The measurement points are written to."""
    database: str = "orders"
    """v1: the database points are written to."""
    retention_policy: str | None = None
    """v1: the retention policy to write with (the database's default when null)."""
    create_database: bool = True
    """v1: create the database (with the v1 query API) if missing."""
    username: str | None = None
    """v1: the user name, sent as ``Authorization: Basic``, never in the URL."""
    password: SecretStr | None = None
    """v1: the password, sent as ``Authorization: Basic``, never in the URL."""
    org: str = "-"
    """v2: the organisation."""
    bucket: str | None = None
    """v2: the bucket (default: ``database``)."""
    token: SecretStr | None = None
    """v2: the API token."""
    verify_ssl: bool = True
    """Verify the server's TLS certificate."""


KafkaTopic = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9._-]{1,249}$")]


class KafkaSinkSettings(_SinkSection):
    """Kafka: every outbox event on a topic per aggregate type, keyed by its aggregate.

    ``url`` is ``kafka://host:port`` (several brokers: ``kafka://host1:port,host2:port``),
    without a user name or password: the sink connects without authentication.
    """

    type: Literal["kafka"]
    url: SecretUrl
    """``kafka://host:port[,host:port]``, without a user name or password (refused, naming the
    key)."""
    topic_prefix: str = Field(default="fanout.", pattern=r"^[a-zA-Z0-9._-]{0,200}$")
    """An aggregate type without an entry in ``topics`` goes to ``<topic_prefix><type>``."""
    topics: dict[str, KafkaTopic | None] = Field(default_factory=dict)
    """Topic by aggregate type; ``null`` publishes nothing of that type."""
    create_topics: bool = True
    """Create each topic (if missing) before its first event is published."""
    partitions: int = Field(default=6, ge=1, le=10_000)
    """Partitions of each topic the sink creates."""
    replication_factor: int = Field(default=1, ge=1, le=32)
    """Replication factor of each topic the sink creates."""
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    """Compression of the producer's batches."""
    linger_ms: int = Field(default=5, ge=0, le=10_000)
    """How long the producer waits to fill a batch."""
    max_request_bytes: int = Field(default=1_048_576, ge=1_024)
    """The largest request (and so record) the producer sends; a larger event is
    dead-lettered."""

    @field_validator("url")
    @classmethod
    def _kafka_url(cls, url: SecretUrl) -> SecretUrl:
        try:
            bootstrap_servers(url.get_secret_value())
        except ValueError as error:
            raise ValueError(
                f"must be kafka://host:port (several brokers: comma-separated): {error}"
            ) from None
        return url


SinkSettings = Annotated[
    MemorySinkSettings
    | MongoSinkSettings
    | RedisSinkSettings
    | ElasticsearchSinkSettings
    | InfluxSinkSettings
    | KafkaSinkSettings,
    Field(discriminator="type"),
]
SinkName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,99}$")]


class ApiSettings(_Section):
    """The HTTP API served by ``fanout serve``."""

    host: str = "127.0.0.1"
    """The address ``fanout serve`` listens on."""
    port: int = Field(default=8000, ge=1, le=65535)
    """The port ``fanout serve`` listens on."""
    key: SecretStr | None = None
    """With a key (16+ characters), every route but the probes and the OpenAPI document needs
    ``Authorization: Bearer <key>``; required to serve on an address other than loopback
    (127.0.0.0/8, ::1, localhost): ``fanout serve`` refuses to start without it (exit 2, naming
    ``api.key`` and the file) unless ``allow_unauthenticated`` is set."""
    allow_unauthenticated: bool = False
    """Serve on a non-loopback address without ``key`` (otherwise refused)."""
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    """Larger request bodies get 413."""
    health_timeout_seconds: float = Field(default=2.0, gt=0)
    """Bound on each check of ``/readyz`` and ``fanout doctor``."""
    # Longer than the idle expiry of client pools and load balancers (httpx 5 s, AWS ALB 60 s),
    # so that a client never sends a request on a connection the server is closing.
    keep_alive_seconds: int = Field(default=75, ge=1)
    """How long an idle connection stays open; keep it above the idle expiry of your clients' pools
    and load balancers."""
    workers: int = Field(default=1, ge=1, le=64)
    """Server processes sharing the port (the API keeps no state beyond PostgreSQL); with
    several, ``/metrics`` adds up every worker's counts (prometheus_client's multiprocess mode, in
    ``$PROMETHEUS_MULTIPROC_DIR`` or a temporary directory) and SIGTERM stops them all, each
    finishing its open requests."""

    @field_validator("key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters")
        return key


class LoggingSettings(_Section):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The lowest level logged."""


def _bad_header_name(name: str) -> str:
    """Why ``name`` is no header name; the name itself only when it looks like one (a value
    pasted into the name, with its credentials, is not repeated)."""
    rule = "must be lower case letters, digits, '-', '_' or '.' (gRPC metadata)"
    if _ECHOED_NAME.fullmatch(name):
        return f"header name {name!r} {rule}"
    return f"a header name {rule}; one holds other characters (is a value in its place?)"


class TelemetrySettings(_Section):
    """Traces (OpenTelemetry), exported over OTLP/gRPC. Off unless ``enabled``: with it on, the
    HTTP request, its transaction and statements, and the outbox rows it writes share a trace
    (the rows carry its ``traceparent``), and the relay's deliveries of those rows join it."""

    enabled: bool = False
    """Whether this process exports spans (``fanout serve``'s workers, ``fanout relay``,
    ``backfill`` and ``rewind``)."""
    endpoint: str | None = None
    """The collector's OTLP/gRPC endpoint, ``http://host:4317`` (or ``https://``), without
    credentials (give them in ``headers``); unset, the exporter's own default applies
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, else ``http://localhost:4317``)."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Headers sent with every export, such as a vendor's API key (gRPC metadata: names in
    lower case)."""
    sampling_ratio: float = Field(default=1.0, ge=0, le=1)
    """The share of new traces recorded."""
    trust_callers: bool = True
    """Whether a request carrying a ``traceparent`` follows its caller's choice (its sampled
    flag), as W3C trace context intends; false, the caller's trace is continued but kept at
    ``sampling_ratio`` like a new one (for an API open to callers that should not decide
    what is recorded)."""
    service_name: str = Field(default="fanout", min_length=1, max_length=200)
    """The ``service.name`` of every span; the resource's ``fanout.role`` tells an API worker,
    a relay and a command apart."""
    export_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """How long one export may take before its spans are dropped."""

    @field_validator("headers")
    @classmethod
    def _metadata(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not GRPC_METADATA_NAME.fullmatch(name):
                raise ValueError(_bad_header_name(name))
            if not GRPC_METADATA_VALUE.fullmatch(value.get_secret_value()):
                raise ValueError(
                    f"the value of header {name!r} must be printable ASCII on one line "
                    "(gRPC metadata)"
                )
        return headers

    @field_validator("endpoint")
    @classmethod
    def _collector_address(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not OTLP_ENDPOINT.fullmatch(endpoint):
            raise ValueError(
                "must be http://host:port or https://host:port, with no credentials, path or "
                "query (give credentials in telemetry.headers)"
            )
        return endpoint


class Settings(BaseSettings):
    """Every setting of the gateway. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    postgres: PostgresSettings
    pricing: PricingSettings = PricingSettings()
    orders: OrderSettings = OrderSettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    payments: PaymentsSettings = PaymentsSettings()
    events: EventsSettings = EventsSettings()
    relay: RelaySettings = RelaySettings()
    sinks: dict[SinkName, SinkSettings] = Field(default_factory=dict)
    api: ApiSettings = ApiSettings()
    logging: LoggingSettings = LoggingSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init arguments; the environment must win over it.
        return _EnvironmentWithoutSinkKeys(settings_cls), init_settings

    @property
    def enabled_sinks(self) -> set[str]:
        """The names of the sinks a relay started with these settings serves."""
        return {name for name, sink in self.sinks.items() if sink.enabled}


class _EnvironmentWithoutSinkKeys(EnvSettingsSource):
    """The environment source, leaving ``FANOUT_SINKS_<NAME>_<KEY>`` variables to
    :func:`load_settings` (which knows the sinks' names); ``FANOUT_SINKS`` holding a JSON
    object of whole sinks still works."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        sinks = values.get("sinks")
        if isinstance(sinks, dict):
            whole = {name: entry for name, entry in sinks.items() if isinstance(entry, dict)}
            if whole:
                values["sinks"] = whole
            else:
                del values["sinks"]
        return values


def default_config_path() -> Path:
    """The file named by ``FANOUT_CONFIG``, else ``config/gateway.yaml``."""
    return Path(os.environ.get(CONFIG_PATH_VARIABLE) or DEFAULT_CONFIG_PATH)


def load_settings(path: Path | str | None = None) -> Settings:
    """Load settings from a YAML file and ``FANOUT_*`` environment variables.

    With no ``path``, the default file is used when it exists (a missing default file is not
    an error: the environment may hold everything). An explicit ``path`` must exist.
    """
    explicit = path is not None
    config_path = Path(path) if path is not None else default_config_path()
    values: dict[str, Any] = {}
    if config_path.exists():
        try:
            values = interpolate(_read_yaml(config_path), os.environ)
        except MissingVariable as error:
            raise ConfigError(error.key, str(error), config_path) from None
    elif explicit or os.environ.get(CONFIG_PATH_VARIABLE):
        raise ConfigError("(file)", "configuration file not found", config_path)
    source = config_path if config_path.exists() else None
    sinks = values.get("sinks") or {}
    if isinstance(sinks, dict):
        unmatched = unmatched_variables(sinks, os.environ)
        if unmatched:
            raise ConfigError(
                unmatched[0],
                f"names no sink of the file (its sinks: {', '.join(sinks) or 'none'})",
                source,
            )
        if sinks:
            values["sinks"] = with_overrides(sinks, os.environ)
    try:
        return Settings(**values)
    except pydantic.ValidationError as error:
        raise _config_error(error, source) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("(file)", f"not valid YAML{where}", path) from None
    except OSError as error:
        raise ConfigError("(file)", f"cannot be read: {error.strerror}", path) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError("(file)", "the top level must be a mapping of sections", path)
    return dict(loaded)


SINK_TYPES = frozenset(
    get_args(model.model_fields["type"].annotation)[0]
    for model in get_args(get_args(SinkSettings)[0])
)
"""The ``type`` of each kind of sink."""


def _key_path(location: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The configuration key of an error's location: without the sink type pydantic inserts
    after a sink's name (``sinks.events.kafka.url`` is the key ``sinks.events.url``)."""
    if len(location) > 2 and location[0] == "sinks" and location[2] in SINK_TYPES:
        return (*location[:2], *location[3:])
    return location


def _config_error(error: pydantic.ValidationError, file: Path | None) -> ConfigError:
    first = error.errors()[0]
    location = _key_path(tuple(first["loc"]))
    key = ".".join(str(part) for part in location)
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    if first["type"] == "missing":
        message = "required value is missing"
    if len(location) >= 3 and location[0] == "sinks":
        variable = sink_variable(str(location[1]), str(location[2]))
    else:
        variable = ENV_PREFIX + "_".join(str(part) for part in location).upper()
    source: Path | str | None = file
    if variable in os.environ:
        source = f"environment variable {variable}"
    count = len(error.errors())
    if count > 1:
        message += f" (and {count - 1} more problem{'s' if count > 2 else ''})"
    return ConfigError(key, message, source)
