"""Consistency tokens: what a write hands its caller so that a later read sees it.

A token is a WAL position of the database that committed the write, written for clients as
hexadecimal (opaque to them). In sharded mode it also names that database: the shard's 16-bit
tag (:func:`gateway.order_ids.shard_tag`) comes first, ``TTTT-POSITION``. A WAL position says
something only of the replicas of the database that wrote it: a token of another database
(another shard, a one-database token in sharded mode, a shard's token in one-database mode)
sends the read to this database's primary, which has every write it committed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import ValidationError

TOKEN_PATTERN = r"^(?:[0-9A-Fa-f]{4}-)?[0-9A-Fa-f]{1,16}$"
"""A consistency token: a WAL position as one hexadecimal number, after the four hexadecimal
digits of its shard's tag and a hyphen in sharded mode."""
_TOKEN = re.compile(TOKEN_PATTERN)


@dataclass(frozen=True)
class ConsistencyToken:
    """A write's WAL position on the database that committed it."""

    position: int
    """The WAL position a replica must have replayed to show the write."""
    shard_tag: int | None = None
    """The tag of the shard that committed the write; ``None``: the one database of
    unsharded mode."""


def format_token(token: ConsistencyToken) -> str:
    """``token`` as clients see it: ``POSITION``, or ``TTTT-POSITION`` from a shard."""
    position = f"{token.position:X}"
    return position if token.shard_tag is None else f"{token.shard_tag:04X}-{position}"


def parse_token(text: str, field: str = "consistency_token") -> ConsistencyToken:
    """A token a write returned; a clear error naming ``field`` if ``text`` is not one."""
    if not _TOKEN.fullmatch(text):
        raise ValidationError.single(
            field, f"{text!r} is not a consistency token (one a write of this API returned)"
        )
    tag, _, position = text.rpartition("-")
    return ConsistencyToken(int(position, 16), int(tag, 16) if tag else None)


def issued_by(token: ConsistencyToken, shard_tag: int | None) -> bool:
    """Whether ``token`` was issued by the database a read goes to: the shard with
    ``shard_tag``, or (``None``) the one database of unsharded mode. Only then does its
    position say anything of that database's replicas."""
    return token.shard_tag == shard_tag
