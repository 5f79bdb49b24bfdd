"""The chaos run's HTTP client: it retries as a careful client does, and counts what it met."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.chaos.plan import RETRY_FOR_SECONDS, FailedAttempt, asks_to_send_again


@dataclass
class ClientCounts:
    """What the client saw."""

    attempts: int = 0
    failed_attempts: Counter[str] = field(default_factory=Counter)
    unexplained_failures: list[dict[str, Any]] = field(default_factory=list)
    placements_replayed: int = 0
    transitions_found_applied: int = 0
    operations_given_up: Counter[str] = field(default_factory=Counter)
    placed: int = 0
    transitions: int = 0
    placements_sent_again: Counter[str] = field(default_factory=Counter)
    """Placements answered with a problem asking for the request again, by problem type."""


def problem_type(response: httpx.Response) -> str | None:
    """The type of the problem ``response`` carries, if it is one."""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


class ChaosClient:
    """Places and moves orders through the API as a careful client does: a request that
    fails with a 503 or a lost connection is sent again after a pause, unchanged."""

    def __init__(self, url: str, counts: ClientCounts, origin: float) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0))
        self.counts = counts
        self.origin = origin
        self.failures: list[FailedAttempt] = []
        self.successes: list[tuple[float, float]] = []
        """When each answered attempt was sent and answered (a 4xx is an answer too)."""
        self.acknowledged: list[tuple[float, dict[str, Any]]] = []
        """Each order whose placement was acknowledged, with when (seconds since the load
        began)."""

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def place(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Place an order; its idempotency key makes every retry safe."""
        key = f"chaos-{uuid.uuid4()}"
        deadline = time.perf_counter() + RETRY_FOR_SECONDS
        while True:
            response = await self._send("POST", "/orders", request, {"Idempotency-Key": key})
            if response is None or time.perf_counter() > deadline:
                break
            kind = problem_type(response)
            if not asks_to_send_again(response.status_code, kind):
                break
            self.counts.placements_sent_again[str(kind).rsplit(":", 1)[-1]] += 1
            pause = float(response.headers.get("Retry-After", "1"))
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
        if response is None or response.status_code not in (200, 201):
            self._give_up("place", response)
            return None
        if response.headers.get("Idempotent-Replayed") == "true":
            self.counts.placements_replayed += 1
        self.counts.placed += 1
        order: dict[str, Any] = response.json()
        self.acknowledged.append((self._now(), order))
        return order

    async def transition(self, order: dict[str, Any], status: str) -> dict[str, Any] | None:
        """Move ``order`` on, guarded by its version; a retry of a move that was applied
        gets a version conflict, and reading the order shows it applied."""
        path = f"/orders/{order['id']}"
        body = {"status": status, "expected_version": order["version"]}
        response = await self._send("POST", f"{path}/transitions", body, {})
        if response is not None and response.status_code == 409:
            current = await self._send("GET", path, None, {})
            if current is not None and current.status_code == 200:
                moved: dict[str, Any] = current.json()
                if moved["status"] == status and moved["version"] == order["version"] + 1:
                    self.counts.transitions_found_applied += 1
                    self.counts.transitions += 1
                    return moved
        if response is None or response.status_code != 200:
            self._give_up("transition", response)
            return None
        self.counts.transitions += 1
        result: dict[str, Any] = response.json()
        return result

    def _give_up(self, operation: str, response: httpx.Response | None) -> None:
        status = "no answer" if response is None else f"HTTP {response.status_code}"
        kind = problem_type(response) if response is not None else None
        detail = f" {kind.rsplit(':', 1)[-1]}" if kind else ""
        self.counts.operations_given_up[f"{operation}: {status}{detail}"] += 1

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response | None:
        deadline = time.perf_counter() + RETRY_FOR_SECONDS
        for attempt in itertools.count():
            self.counts.attempts += 1
            sent = self._now()
            try:
                response = await self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as error:
                self._failed(type(error).__name__, sent)
                pause = min(2.0, 0.1 * 2**attempt)
            else:
                if response.status_code != 503:
                    if response.status_code >= 500:
                        self._failed(f"HTTP {response.status_code}", sent)
                    else:
                        self.successes.append((sent, self._now()))
                    return response
                retry_after = response.headers.get("Retry-After")
                self._failed("HTTP 503" + ("" if retry_after else " without Retry-After"), sent)
                pause = float(retry_after or 1)
            if time.perf_counter() + pause > deadline:
                return None
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
        return None

    def _now(self) -> float:
        return time.perf_counter() - self.origin

    def _failed(self, kind: str, sent: float) -> None:
        self.failures.append(FailedAttempt(kind, sent, self._now()))
        self.counts.failed_attempts[kind] += 1
