"""What the API answers while PostgreSQL fails over: 503 with Retry-After, never 500, for each
error a client library meets in that window."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from asyncpg.exceptions import TargetServerAttributeNotMatched
from fastapi import FastAPI

from gateway.api.problems import install_problem_handlers
from gateway.postgres.database import is_unavailability

FAILOVER_ERRORS = [
    # The primary demoted under a session that survived (or set read-only for maintenance).
    asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    # Connecting while no host of a multi-host URL is the primary yet.
    TargetServerAttributeNotMatched(
        'None of the hosts match the target attribute requirement "read-write"'
    ),
    # The old primary's backends ended by its shutdown, and a connection cut mid-statement.
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
]


@pytest.mark.parametrize("error", FAILOVER_ERRORS, ids=lambda e: type(e).__name__)
def test_a_failover_error_is_an_unavailability(error: Exception) -> None:
    assert is_unavailability(error)


@pytest.mark.parametrize("error", FAILOVER_ERRORS, ids=lambda e: type(e).__name__)
async def test_the_api_answers_503_with_retry_after_during_a_failover(error: Exception) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/orders")
    async def place() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.post("/orders")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"].endswith("database-unavailable")


def test_a_refusal_that_is_not_a_failover_stays_the_request_s_own() -> None:
    assert not is_unavailability(asyncpg.UniqueViolationError("duplicate key"))
