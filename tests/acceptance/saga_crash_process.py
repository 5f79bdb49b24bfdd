"""A writing process of sharded mode that stops dead at one boundary of the saga, says so on
stdout, and waits to be killed (SIGKILL, by the test).

    python -m tests.acceptance.saga_crash_process BOUNDARY REQUEST_JSON [KEY_OR_ORDER_ID]

The settings come from the environment (``FANOUT_POSTGRES_URL``, ``FANOUT_POSTGRES_SHARDS``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from uuid import UUID

from gateway import Gateway
from gateway.sharding import sweeper
from gateway.sharding.reservations import Settlement

AFTER_RESERVE = "after-reserve"
AFTER_CREATE = "after-create"
AFTER_CANCEL = "after-cancel"


async def _stop_here(boundary: str) -> None:
    print(boundary, flush=True)
    await asyncio.Event().wait()


async def main(boundary: str, request: dict[str, Any], argument: str) -> None:
    gateway = await Gateway.connect()
    assert gateway.topology.sharded
    if boundary == AFTER_RESERVE:

        async def no_create(*_: object) -> None:
            await _stop_here(boundary)

        gateway.sharding._create_order = no_create  # type: ignore[method-assign,assignment]
        await gateway.place_order(request, idempotency_key=argument)
    elif boundary == AFTER_CREATE:
        settle = gateway.sharding._settle

        async def no_commit(order_id: UUID, settlement: Settlement) -> bool:
            if settlement is Settlement.COMMIT:
                await _stop_here(boundary)
            return await settle(order_id, settlement)

        gateway.sharding._settle = no_commit  # type: ignore[method-assign]
        await gateway.place_order(request, idempotency_key=argument)
    elif boundary == AFTER_CANCEL:

        async def no_return(*_: object) -> int:
            await _stop_here(boundary)
            return 0

        sweeper.return_units = no_return  # type: ignore[assignment]
        await gateway.transition(argument, "cancelled")
    raise SystemExit(f"unknown boundary {boundary!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]))
