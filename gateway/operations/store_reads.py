"""Reading a store back for a check: a failure of the store's client is reported as the store
being unreadable, never raised past the check as a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from gateway.configuration.secrets import redact_url

T = TypeVar("T")


class StoreUnreadable(Exception):
    """A store could not be read back; the message says how its client failed."""


def describe(error: BaseException) -> str:
    """The error's type and message, secrets masked, short enough for a table cell or a log
    line."""
    return redact_url(f"{type(error).__name__}: {error}")[:300]


async def read(call: Awaitable[T]) -> T:
    """The result of one read of a store, or :class:`StoreUnreadable`."""
    try:
        return await call
    except Exception as error:  # each store's client fails in its own ways: all are the store's
        raise StoreUnreadable(describe(error)) from error


async def read_batches(batches: AsyncIterator[T]) -> AsyncIterator[T]:
    """The batches of a streamed read of a store; :class:`StoreUnreadable` if one fails."""
    while True:
        try:
            batch = await anext(batches)
        except StopAsyncIteration:
            return
        except Exception as error:  # as in read()
            raise StoreUnreadable(describe(error)) from error
        yield batch
