"""The gateway's exceptions: one base class and a precise subclass per failure.

Every error raised by the public API derives from :class:`GatewayError`. When one is raised
by a write operation, that operation has written nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is malformed: names the key and where it came from."""

    def __init__(self, key: str, message: str, source: Path | str | None) -> None:
        self.key = key
        self.message = message
        self.source = str(source) if source is not None else None
        where = f" (in {self.source})" if self.source else ""
        super().__init__(f"{key}: {message}{where}")


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request: a dotted path such as ``items[0].quantity``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(GatewayError):
    """A request is invalid; :attr:`errors` names every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("ValidationError needs at least one FieldError")
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))

    @classmethod
    def single(cls, field: str, message: str) -> ValidationError:
        """A validation error about one field."""
        return cls([FieldError(field, message)])

    @property
    def field(self) -> str:
        """The first offending field."""
        return self.errors[0].field


class NotFound(GatewayError):
    """A referenced entity does not exist."""

    def __init__(self, entity: str, entity_id: object, field: str | None = None) -> None:
        self.entity = entity
        self.entity_id = entity_id
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"{entity} {entity_id} not found{where}")


class InsufficientInventory(GatewayError):
    """A product has fewer units in stock than an order asks for."""

    def __init__(self, product_id: object, sku: str, requested: int, available: int) -> None:
        self.product_id = product_id
        self.sku = sku
        self.requested = requested
        self.available = available
        super().__init__(
            f"insufficient inventory for product {product_id} ({sku}): "
            f"requested {requested}, available {available}"
        )


class IllegalTransition(GatewayError):
    """The order state machine does not allow this status change."""

    def __init__(self, order_id: object, from_status: str, to_status: str) -> None:
        self.order_id = order_id
        self.from_status = str(from_status)
        self.to_status = str(to_status)
        super().__init__(
            f"order {order_id} cannot move from {self.from_status!r} to {self.to_status!r}"
        )


class Conflict(GatewayError):
    """The request conflicts with the current state (base of the 409-style errors)."""


class VersionConflict(Conflict):
    """Optimistic concurrency: the caller's expected version is not the current one."""

    def __init__(self, order_id: object, expected: int, actual: int) -> None:
        self.order_id = order_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"order {order_id} is at version {actual}, not the expected version {expected}"
        )


class IdempotencyConflict(Conflict):
    """An idempotency key was reused with a different request."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"idempotency key {key!r} was already used with a different request")


class AlreadyExists(Conflict):
    """A unique attribute (such as a customer's email) is already taken."""

    def __init__(self, entity: str, field: str, value: object) -> None:
        self.entity = entity
        self.field = field
        self.value = value
        super().__init__(f"{entity} with {field} {value!r} already exists")


class ReservationLapsed(Conflict):
    """Sharded mode: the order's inventory reservation lapsed before the shard created the
    order (the shard was slower than ``postgres.reservation_seconds``), so no order was
    created and its units were given back; the request may be sent again, with its key."""

    def __init__(self, order_id: object) -> None:
        self.order_id = order_id
        super().__init__(
            f"the inventory reservation of order {order_id} lapsed before the order was created "
            "(postgres.reservation_seconds); no order was created, place it again"
        )


class RequestInProgress(Conflict):
    """Sharded mode: concurrent requests with the same idempotency key kept settling each
    other's reservations; this one gave up without writing anything and may be retried."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"a concurrent request with idempotency key {key!r} is being placed; retry this request"
        )


class CustomerMoving(Conflict):
    """Sharded mode: the customer kept moving between shards while a request looked for it;
    nothing was written, and the request may be sent again."""

    def __init__(self, customer_id: object) -> None:
        self.customer_id = customer_id
        super().__init__(
            f"customer {customer_id} is moving between shards; nothing was written, retry this "
            "request"
        )


class SinkInUse(Conflict):
    """A sink cannot be retired or rewound while a relay still holds a lease on it."""

    def __init__(self, sink: str, owners: list[str], doing: str = "retiring it") -> None:
        self.sink = sink
        self.owners = owners
        super().__init__(
            f"sink {sink!r} is served by the relay {', '.join(owners)}: stop that relay (or "
            f"remove the sink from its configuration and restart it) before {doing}"
        )


class UnknownSink(NotFound):
    """No sink of that name has positions in the outbox."""

    def __init__(self, sink: str) -> None:
        super().__init__("sink", sink)


class MoveRefused(GatewayError):
    """Sharded mode: a customer move that cannot start (unknown shard, the customer is on the
    target already, or not on the shard the directory names)."""


class MigrationError(GatewayError):
    """The schema migrations cannot be applied or rolled back as asked."""


class MigrationChecksumMismatch(MigrationError):
    """An applied migration's file changed after it was applied."""

    def __init__(self, version: int, name: str, recorded: str, current: str) -> None:
        self.version = version
        self.name = name
        super().__init__(
            f"migration {version:04d}_{name} was applied with checksum {recorded[:12]}, "
            f"but its file now has checksum {current[:12]}; restore the file or write a new "
            "migration instead of editing an applied one"
        )
