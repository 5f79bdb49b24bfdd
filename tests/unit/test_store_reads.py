"""A store's client failing during a check becomes StoreUnreadable, with what failed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.operations.store_reads import StoreUnreadable, read, read_batches


async def _fails() -> int:
    raise TimeoutError("timed out")


async def _two_then_fails() -> AsyncIterator[list[str]]:
    yield ["a"]
    yield ["b"]
    raise ConnectionResetError("reset by peer")


async def _answers() -> int:
    return 7


async def test_a_failed_read_is_reported_with_its_type_and_message() -> None:
    assert await read(_answers()) == 7
    with pytest.raises(StoreUnreadable, match=r"^TimeoutError: timed out$"):
        await read(_fails())


async def test_a_stream_yields_its_batches_until_a_read_fails() -> None:
    seen: list[list[str]] = []
    with pytest.raises(StoreUnreadable, match=r"^ConnectionResetError: reset by peer$"):
        async for batch in read_batches(_two_then_fails()):
            seen.append(batch)
    assert seen == [["a"], ["b"]]
