"""Placing customers on shards: weighted rendezvous hashing against md5 % N."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest

from gateway.sharding.placement import Shard, modulo_shard, moved_share, rendezvous_shard

FOUR = [Shard(f"shard-{n}") for n in range(4)]
FIVE = [*FOUR, Shard("shard-4")]


def customers(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


KEYS = customers(20_000)


def test_a_key_always_goes_to_the_same_shard_whatever_the_order_of_the_shards() -> None:
    for key in KEYS[:200]:
        assert rendezvous_shard(key, FOUR) == rendezvous_shard(key, list(reversed(FOUR)))


def test_adding_a_shard_moves_about_its_share_and_only_onto_it() -> None:
    moved = [key for key in KEYS if rendezvous_shard(key, FOUR) != rendezvous_shard(key, FIVE)]
    assert abs(len(moved) / len(KEYS) - 1 / 5) < 0.015
    assert {rendezvous_shard(key, FIVE) for key in moved} == {"shard-4"}


def test_removing_a_shard_moves_only_its_own_keys() -> None:
    three = FOUR[:3]
    for key in KEYS[:5_000]:
        if rendezvous_shard(key, FOUR) != "shard-3":
            assert rendezvous_shard(key, three) == rendezvous_shard(key, FOUR)


def test_shares_follow_the_weights() -> None:
    weighted = [Shard("small", 1.0), Shard("large", 3.0)]
    shares = Counter(rendezvous_shard(key, weighted) for key in KEYS)
    assert abs(shares["large"] / len(KEYS) - 0.75) < 0.015


def test_md5_modulo_moves_most_keys_when_a_shard_is_added() -> None:
    rendezvous = moved_share(KEYS, FOUR, FIVE, rendezvous_shard)
    modulo = moved_share(KEYS, FOUR, FIVE, modulo_shard)
    assert abs(modulo - 4 / 5) < 0.015
    assert rendezvous < modulo / 3


@pytest.mark.parametrize(
    ("shard", "message"), [(("", 1.0), "needs a name"), (("a", 0.0), "above 0")]
)
def test_a_shard_needs_a_name_and_a_positive_weight(shard: tuple[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shard(*shard)


def test_placing_on_no_shard_is_an_error() -> None:
    with pytest.raises(ValueError, match="no shard"):
        rendezvous_shard("key", [])
