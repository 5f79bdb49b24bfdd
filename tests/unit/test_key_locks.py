"""KeyLocks: writers sharing a key take turns; writers with disjoint keys do not wait."""

from __future__ import annotations

import asyncio

from adapters.key_locks import KeyLocks


async def test_writers_sharing_a_key_take_turns_and_disjoint_ones_do_not_wait() -> None:
    locks = KeyLocks()
    inside: set[str] = set()
    overlaps: list[tuple[str, str]] = []
    first_in, release_first = asyncio.Event(), asyncio.Event()

    async def writer(name: str, keys: set[str], hold: asyncio.Event | None = None) -> None:
        async with locks.holding(keys):
            overlaps.extend((name, other) for other in inside)
            inside.add(name)
            if hold is not None:
                first_in.set()
                await hold.wait()
            inside.discard(name)

    first = asyncio.create_task(writer("a", {"x", "y"}, release_first))
    await first_in.wait()
    sharing = asyncio.create_task(writer("b", {"y", "z"}))
    await writer("c", {"w"})  # disjoint: in while "a" holds its keys
    assert not sharing.done()  # "b" waits for "y"
    release_first.set()
    await asyncio.gather(first, sharing)
    assert overlaps == [("c", "a")]
