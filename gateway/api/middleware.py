"""ASGI middleware of the API: a request body size limit and request metrics."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS
from gateway.api.problems import body_too_large, problem_response


class BodySizeLimit:
    """Refuse a request body larger than ``max_bytes`` with a 413 problem.

    A declared ``Content-Length`` is checked before the app runs, without reading the body; a
    chunked body is counted as it arrives. (Starlette's own limiter answers a declared length
    in plain text, which would break the API's problem-details contract.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
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
