"""Which shard a new customer goes to: weighted rendezvous hashing.

Each shard scores every key with a hash of (shard, key); the key goes to the highest score.
With weights, the score is ``-weight / ln(u)`` for the hash ``u`` in (0, 1), which gives each
shard a share of keys proportional to its weight. Adding a shard moves only the keys the new
shard now wins (its share, 1/(N+1) at equal weights), and removing one moves only its own keys;
no key moves between shards that stay. There is no ring of virtual nodes to size: the shares
are exact in expectation, at the cost of scoring every shard per lookup, which is nothing for
the handful of shards a deployment has (and the directory remembers each placement anyway).

``modulo_shard`` is the ``md5(key) % N`` of the original sketch, kept for comparison: adding a
shard to N moves about N/(N+1) of the keys.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

_SCALE = float(2**64)


@dataclass(frozen=True)
class Shard:
    """A shard's name (what the directory records) and its relative weight."""

    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a shard needs a name")
        if not self.weight > 0:
            raise ValueError(f"shard {self.name!r}: the weight must be above 0")


def _unit_hash(shard: str, key: str) -> float:
    """A hash of (shard, key), uniform in the open interval (0, 1)."""
    digest = hashlib.blake2b(f"{shard}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def score(shard: Shard, key: str) -> float:
    """The shard's bid for ``key``: the highest bid wins."""
    return -shard.weight / math.log(_unit_hash(shard.name, key))


def rendezvous_shard(key: str, shards: Sequence[Shard]) -> str:
    """The name of the shard ``key`` goes to."""
    if not shards:
        raise ValueError("no shard to place on")
    return max(shards, key=lambda shard: (score(shard, key), shard.name)).name


def modulo_shard(key: str, shards: Sequence[Shard]) -> str:
    """``md5(key) % N`` over the shards in their order (weights ignored)."""
    if not shards:
        raise ValueError("no shard to place on")
    digest = hashlib.md5(key.encode(), usedforsecurity=False).digest()
    return shards[int.from_bytes(digest, "big") % len(shards)].name


Placement = Callable[[str, Sequence[Shard]], str]


def moved_share(
    keys: Iterable[str], before: Sequence[Shard], after: Sequence[Shard], place: Placement
) -> float:
    """The share of ``keys`` that ``place`` puts on another shard ``after`` than ``before``."""
    total = moved = 0
    for key in keys:
        total += 1
        moved += place(key, before) != place(key, after)
    return moved / total if total else 0.0
