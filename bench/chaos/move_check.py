"""The check after a chaos run that moved customers: every acknowledged order of each customer
a move was tried for still resolves through the API (by its id, its history and its
customer's orders) at its version in PostgreSQL, held once, by the shard the directory names
for its customer; and no move is left unfinished."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from gateway.postgres.queries import query
from gateway.write_path.pages import MAX_PAGE_SIZE

HISTORIES_PER_CUSTOMER = 25
"""How many of each customer's orders have their history read through the API (every order
is read by its id)."""
PROBLEMS_SHOWN = 10
ATTEMPTS = 5
"""How many times a read is sent while the API answers 503 or the connection fails (pools
reconnecting after the run's restarts): the check is of what the API answers, not of when."""


@dataclass(frozen=True)
class HeldRow:
    """An order's row as one shard holds it."""

    shard: str
    customer_id: str
    version: int


@dataclass(frozen=True)
class Answer:
    """What the API answered: its status code (0: no answer) and, when found, what it
    found."""

    status: int
    body: Mapping[str, Any] | None = None


def order_problems(
    order_id: str,
    customer_id: str,
    home: str | None,
    held: Sequence[HeldRow],
    answer: Answer,
    history: Sequence[int] | None,
    listed: bool,
) -> list[str]:
    """What is wrong with one order of a moved customer: held by other than exactly the
    customer's shard (``home``, the directory's), not answered by its id at the version held,
    a history (its versions, if read) other than 1..version, or missing from its customer's
    orders (``listed``). Empty when it resolves."""
    problems = []
    if [(row.shard, row.customer_id) for row in held] != [(home, customer_id)]:
        shards = [row.shard for row in held]
        problems.append(f"order {order_id}: held by {shards}, its customer is on {home}")
    version = held[0].version if held else None
    body = answer.body or {}
    if answer.status != 200 or body.get("id") != order_id:
        problems.append(f"order {order_id}: GET /orders/{{id}} answered {answer.status}")
    elif (body.get("customer_id"), body.get("version")) != (customer_id, version):
        problems.append(
            f"order {order_id}: answered version {body.get('version')} of customer "
            f"{body.get('customer_id')}, PostgreSQL holds version {version} of {customer_id}"
        )
    if history is not None and version is not None and list(history) != [*range(1, version + 1)]:
        problems.append(f"order {order_id}: history versions {list(history)}, version {version}")
    if not listed:
        problems.append(f"order {order_id}: not among its customer's orders")
    return problems


async def held_rows(
    shards: Mapping[str, asyncpg.Pool], order_ids: Sequence[str]
) -> dict[str, list[HeldRow]]:
    """Each order's rows, on every shard that holds one."""
    found: dict[str, list[HeldRow]] = {}
    for name, pool in shards.items():
        for row in await pool.fetch(
            "SELECT id::text, customer_id::text, version FROM orders WHERE id = ANY($1::uuid[])",
            list(order_ids),
        ):
            found.setdefault(row["id"], []).append(
                HeldRow(name, row["customer_id"], row["version"])
            )
    return found


async def read(
    http: httpx.AsyncClient, path: str, params: Mapping[str, Any] | None = None
) -> httpx.Response | None:
    """``GET path``, again after a pause while it answers 503 or fails to connect, at most
    ``ATTEMPTS`` times; ``None``: it never answered."""
    response = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = await http.get(path, params=params)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code != 503:
            return response
        await asyncio.sleep(0.5 * attempt)
    return response


async def answer_of(http: httpx.AsyncClient, path: str) -> Answer:
    """What ``GET path`` answers (see :func:`read`)."""
    response = await read(http, path)
    if response is None:
        return Answer(0)
    return Answer(response.status_code, response.json() if response.status_code == 200 else None)


async def listed_order_ids(http: httpx.AsyncClient, customer_id: str) -> set[str]:
    """Every order id ``GET /customers/{id}/orders`` lists, page after page."""
    ids: set[str] = set()
    params: dict[str, Any] = {"limit": MAX_PAGE_SIZE}
    while True:
        response = await read(http, f"/customers/{customer_id}/orders", params)
        if response is None or response.status_code != 200:
            return ids
        page = response.json()
        ids |= {order["id"] for order in page["orders"]}
        if page.get("next_cursor") is None:
            return ids
        params = {"limit": MAX_PAGE_SIZE, "cursor": page["next_cursor"]}


async def check_moved_customers(
    http: httpx.AsyncClient,
    catalog: asyncpg.Pool,
    shards: Mapping[str, asyncpg.Pool],
    orders: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """Check every order in ``orders`` (acknowledged order ids by customer, the customers a
    move was tried for) through the API at ``http`` against the shards."""
    problems: list[str] = []
    checked = histories = 0
    for customer_id, order_ids in orders.items():
        home = await catalog.fetchval(query("directory_shard_of"), UUID(customer_id))
        held = await held_rows(shards, order_ids)
        listed = await listed_order_ids(http, customer_id)
        for number, order_id in enumerate(order_ids):
            answer = await answer_of(http, f"/orders/{order_id}")
            history = None
            if number < HISTORIES_PER_CUSTOMER:
                events = await answer_of(http, f"/orders/{order_id}/events")
                history = [event["version"] for event in (events.body or {}).get("events", [])]
                histories += 1
            checked += 1
            problems += order_problems(
                order_id,
                customer_id,
                home,
                held.get(order_id, []),
                answer,
                history,
                order_id in listed,
            )
    return {
        "customers": len(orders),
        "orders_checked": checked,
        "histories_checked": histories,
        "problems": len(problems),
        "first_problems": problems[:PROBLEMS_SHOWN],
    }


def move_findings(report: Mapping[str, Any]) -> list[str]:
    """What the moves' report breaks: a resume that failed, a move left unfinished, an order
    of a moved customer that does not resolve. Moves rolled back or refused break nothing
    (a move gives up rather than pause its customer too long)."""
    broken = []
    resumed = report.get("resumed", {})
    if resumed.get("exit_code"):
        broken.append(f"fanout shards move --resume failed: {resumed}")
    if report.get("unfinished_after_resume"):
        broken.append(f"{report['unfinished_after_resume']} moves left unfinished")
    check = report.get("check", {})
    if check.get("problems"):
        broken.append(
            f"{check['problems']} problems with moved customers' orders: "
            f"{check['first_problems'][:3]}"
        )
    return broken
