"""Idempotency keys: the same key and request give the same resource, created once."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from uuid import UUID

from pydantic import BaseModel

from gateway.errors import IdempotencyConflict, ValidationError
from gateway.postgres.database import Connection
from gateway.postgres.queries import query

MAX_KEY_LENGTH = 255


KEY_PATTERN = f"^[!-~](?:[ -~]{{0,{MAX_KEY_LENGTH - 2}}}[!-~])?$"
"""1 to ``MAX_KEY_LENGTH`` visible ASCII characters, with spaces only inside (an HTTP header
value carries nothing else intact)."""
_KEY = re.compile(KEY_PATTERN)


def validate_key(key: str) -> str:
    """Reject keys that do not match :data:`KEY_PATTERN`."""
    if not _KEY.fullmatch(key):
        raise ValidationError.single(
            "idempotency_key",
            f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (spaces only inside)",
        )
    return key


def request_fingerprint(request: BaseModel) -> str:
    """A stable SHA-256 of a request's content, independent of key order."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyClaim:
    """A key to claim for a resource being created, with the request's fingerprint."""

    scope: str
    key: str
    fingerprint: str
    retention_seconds: int


class KeyTaken(Exception):
    """The key was not claimed: another request holds it (see :func:`holder`)."""


async def holder(connection: Connection, wanted: KeyClaim, resource_id: UUID) -> UUID | None:
    """After :class:`KeyTaken`: the resource the first request with this key created, or
    ``None`` when the key expired meanwhile and is now claimed for ``resource_id``."""
    row = await connection.fetchrow(query("get_idempotency_key"), wanted.scope, wanted.key)
    if row is None:
        return await claim(
            connection,
            wanted.scope,
            wanted.key,
            wanted.fingerprint,
            resource_id,
            wanted.retention_seconds,
        )
    if row["request_hash"] != wanted.fingerprint:
        raise IdempotencyConflict(wanted.key)
    existing: UUID = row["resource_id"]
    return existing


async def claim(
    connection: Connection,
    scope: str,
    key: str,
    fingerprint: str,
    resource_id: UUID,
    retention_seconds: int,
) -> UUID | None:
    """Claim ``key`` for the resource ``resource_id`` in the current transaction.

    Returns ``None`` when this transaction now owns the key, so it goes on to create the
    resource, or the id of the resource the first request with the same fingerprint created.
    A concurrent claim of the same key waits until the owner's transaction ends: if it commits,
    the waiter gets its resource id; if it rolls back, the waiter owns the key.
    """
    claimed = await connection.fetchval(
        query("claim_idempotency_key"),
        scope,
        key,
        fingerprint,
        resource_id,
        float(retention_seconds),
    )
    if claimed is not None:
        return None
    row = await connection.fetchrow(query("get_idempotency_key"), scope, key)
    if row is None:
        # Purged between the two statements: it expired, so the key is free again.
        return await claim(connection, scope, key, fingerprint, resource_id, retention_seconds)
    if row["request_hash"] != fingerprint:
        raise IdempotencyConflict(key)
    existing: UUID = row["resource_id"]
    return existing


def earlier_resource(
    request_hash: str | None, resource_id: UUID | None, key: str, fingerprint: str
) -> UUID | None:
    """The resource an earlier request with ``key`` created (its kept key's ``request_hash``
    and ``resource_id``, both ``None`` when no key is kept); ``IdempotencyConflict`` when that
    request differs."""
    if resource_id is None:
        return None
    if request_hash != fingerprint:
        raise IdempotencyConflict(key)
    return resource_id


async def purge_expired(connection: Connection) -> int:
    """Delete expired keys; return how many were deleted."""
    result: str = await connection.execute(query("purge_expired_idempotency_keys"))
    return int(result.split()[-1])
