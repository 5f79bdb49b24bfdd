"""The PostgreSQL advisory locks the gateway takes, in one list so no two share a key."""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class AdvisoryLock(IntEnum):
    """Keys of ``pg_advisory_lock``: every process of one database takes the same key."""

    MIGRATIONS = 0x66616E6F7574
    """Serialises schema migration runners."""
    PRUNE = 0x66616E6F7575
    """Lets one relay at a time prune the outbox."""
    PAYMENT_SWEEP = 0x66616E6F7576
    """Lets one relay at a time cancel the orders whose payment timed out."""
    HISTORY_PRUNE = 0x66616E6F7577
    """Lets one relay at a time delete order events past ``events.retention_days``."""
    SAGA_SWEEP = 0x66616E6F7578
    """Lets one relay at a time settle sharded mode's expired reservations and returned units
    (taken in the catalog)."""


@unique
class AdvisoryLockClass(IntEnum):
    """First keys of the two-key ``pg_advisory_lock(class, object)``, whose second key is a
    hash of one object's id (a key space apart from :class:`AdvisoryLock`'s)."""

    CUSTOMER_MOVE = 0x666D6F76
    """Taken in the catalog for a customer while a process moves it or finishes its move:
    one process at a time per customer."""
    MOVE_ARRIVAL = 0x666D6172
    """Held on a move's target, by the move's id, while the copy of the customer waits for
    the source's commit; a request that followed the move's tombstone waits for it."""
