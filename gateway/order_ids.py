"""Order ids that name their shard: an order id alone routes to its shard, without a lookup.

An order id is a random (version 4) UUID whose first 16 bits are its shard's tag, a hash of the
shard's name. Tags are checked to differ when the settings load, so renaming a shard changes its
tag: a shard's name is part of its orders' ids and must not change once orders exist.
"""

from __future__ import annotations

import hashlib
import os
from uuid import UUID

TAG_BITS = 16


def shard_tag(name: str) -> int:
    """The 16-bit tag of the shard called ``name``."""
    digest = hashlib.blake2b(name.encode(), digest_size=2, person=b"fanout-shard").digest()
    return int.from_bytes(digest, "big")


def new_order_id(tag: int) -> UUID:
    """A new random order id carrying ``tag``."""
    if not 0 <= tag < 1 << TAG_BITS:
        raise ValueError(f"a shard tag is {TAG_BITS} bits, got {tag}")
    raw = bytearray(os.urandom(16))
    raw[0:2] = tag.to_bytes(2, "big")
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return UUID(bytes=bytes(raw))


def tag_of(order_id: UUID) -> int:
    """The shard tag an order id carries."""
    return int.from_bytes(order_id.bytes[0:2], "big")
