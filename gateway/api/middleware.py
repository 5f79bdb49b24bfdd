"""ASGI middleware of the API: a request body size limit and request metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS
from gateway.api.problems import body_too_large, problem_response

# How long, and how much, of a refused body is read and dropped before the 413 is sent.
LINGER_SECONDS = 10.0
LINGER_MAX_BYTES = 256 * 1024 * 1024


async def discard_body(receive: Receive, message: Message | None = None) -> None:
    """Read and drop the rest of a request body, for at most :data:`LINGER_SECONDS` and
    :data:`LINGER_MAX_BYTES` (``message``: the last one read, if any).

    A client still sending a body it was refused must be able to read the answer. The server
    closes the connection after a refused body, and a socket closed with unread data in it
    resets the connection, so the client would see a reset instead of the 413. nginx's
    lingering close does the same, after its answer; here it must come before, because the
    ASGI server stops delivering the body once the response is complete.
    """
    discarded = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while message is None or (
                message["type"] == "http.request" and message.get("more_body", False)
            ):
                if discarded > LINGER_MAX_BYTES:
                    return
                message = await receive()
                discarded += len(message.get("body", b""))


class BodySizeLimit:
    """Refuse a request body larger than ``max_bytes`` with a 413 problem.

    A declared ``Content-Length`` is checked before the app runs; a chunked body is counted as
    it arrives. Either way the rest of the body is read and dropped (bounded) before the
    answer, so that the client reads it. (Starlette's own limiter answers a declared length in
    plain text, which would break the API's problem-details contract.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            # A client waiting for "100 Continue" has sent nothing, and will send nothing.
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await discard_body(receive)
            response = problem_response(Request(scope), body_too_large(self.max_bytes))
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    await discard_body(receive, message)
                    # FastAPI passes an HTTPException raised while reading the body on to the
                    # exception handlers, which answer with the 413 problem.
                    raise HTTPException(413, body_too_large(self.max_bytes).detail)
            return message

        await self.app(scope, counting_receive, send)


class RequestMetrics:
    """Count requests and time them, labelled by the route's template (not the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
