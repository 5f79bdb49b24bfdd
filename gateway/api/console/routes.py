"""The operator console's pages, under ``/console``: sinks, an order across the stores,
relays and leases, replicas and shards; replaying dead letters and retiring a sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from gateway.api.console import access
from gateway.api.console.databases import databases_view, outbox_pools
from gateway.api.console.inputs import missing, sink_name_error
from gateway.api.console.lag import LagHistory, sample_forever
from gateway.api.console.order_view import (
    OrderLookupError,
    order_id_by_number,
    order_view,
    parse_lookup,
    parse_order_id,
)
from gateway.api.console.pages import (
    HERE,
    api_key,
    forged,
    form_of,
    login_page,
    login_required,
    message,
    refusal,
    render,
    safe_next,
    session_id,
    set_cookie,
)
from gateway.api.console.relays import relays_view
from gateway.api.console.sessions import close_session, open_session, session_open
from gateway.api.console.sinks import sinks_view
from gateway.api.problems import internal_error
from gateway.errors import SinkInUse, UnknownSink
from gateway.facade.gateway import Gateway
from gateway.postgres.database import is_unavailability
from gateway.relay import tables

STATIC_FILES = {"console.css": "text/css", "console.js": "text/javascript"}
NOTICES = {
    "replayed": "Replay of {count} dead letter(s) of sink {sink} requested: a relay serving "
    "it delivers them again.",
    "retired": "Sink {sink} retired: {positions} positions and {dead_letters} dead letters "
    "removed.",
}


@asynccontextmanager
async def sampling(app: FastAPI) -> AsyncIterator[None]:
    """Sample every sink's backlog and lag into the console's history while serving."""
    history = LagHistory()
    app.state.console_lag = history

    def pools() -> list[asyncpg.Pool]:
        gateway: Gateway | None = app.state.connection.gateway
        return list(outbox_pools(gateway).values()) if gateway is not None else []

    timeout = app.state.settings.api.health_timeout_seconds
    task = asyncio.create_task(sample_forever(history, pools, timeout))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


console = APIRouter(prefix="/console", include_in_schema=False, lifespan=sampling)


async def page(request: Request, build: Callable[[Gateway], Awaitable[Response]]) -> Response:
    """The page ``build`` makes, once the request may see the console (with a key, its session
    is still open) and PostgreSQL is connected; a page saying what is wrong otherwise (never
    a 500 for a database that does not answer, or a lookup that finds nothing)."""
    refused = refusal(request)
    if refused is not None:
        return refused
    gateway: Gateway | None = request.app.state.connection.gateway
    if gateway is None:
        return not_connected(request)
    try:
        session = session_id(request)
        if session is not None and not await session_open(
            gateway.pool, session, timeout_of(request)
        ):
            return login_required(request)
        return await build(gateway)
    except Exception as error:
        return failure(request, error)


def is_unanswered(error: BaseException) -> bool:
    """Whether ``error`` says PostgreSQL did not answer in time or could not be reached (a
    503: try again shortly), rather than refused what it was asked (a bug: a 500)."""
    return isinstance(error, TimeoutError) or is_unavailability(error)


def failure(request: Request, error: Exception) -> Response:
    """The page for ``error``: 503 if PostgreSQL did not answer, else a 500 whose id is in the
    log with the error."""
    if is_unanswered(error):
        return unavailable(request, error)
    error_id = internal_error(error).extra["error_id"]
    return message(
        request,
        "Internal error",
        f"The request failed on the server; it has been logged as {error_id}.",
        500,
    )


def not_connected(request: Request) -> Response:
    """503: PostgreSQL has not been reached since the server started."""
    return message(request, "Not connected", "PostgreSQL is not connected yet.", 503)


def unavailable(request: Request, error: BaseException) -> Response:
    """503: PostgreSQL did not answer."""
    return message(
        request,
        "PostgreSQL unavailable",
        f"PostgreSQL did not answer in time ({type(error).__name__}); try again shortly.",
        503,
    )


def bad_input(request: Request, problem: str) -> Response:
    """422: what the request named is wrong (``problem`` names the field)."""
    return message(request, "Bad input", problem, 422)


def timeout_of(request: Request) -> float:
    """How long a page waits for one database or store."""
    seconds: float = request.app.state.settings.api.health_timeout_seconds
    return seconds


@console.get("/static/{name}")
async def static_file(name: str) -> Response:
    """The console's stylesheet and script."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(HERE / "static" / name, media_type=media_type)


@console.get("")
async def home(request: Request) -> Response:
    """The sinks at a glance, and the order lookup."""

    async def build(gateway: Gateway) -> Response:
        view = await sinks_view(
            outbox_pools(gateway), request.app.state.sinks, lag_of(request), timeout_of(request)
        )
        return render(request, "home.html", {"view": view, "page_name": "home"})

    return await page(request, build)


@console.get("/sinks")
async def sinks_page(request: Request, notice: str | None = None) -> Response:
    """Each sink's backlog, lag chart and dead letters."""

    async def build(gateway: Gateway) -> Response:
        view = await sinks_view(
            outbox_pools(gateway), request.app.state.sinks, lag_of(request), timeout_of(request)
        )
        return render(
            request,
            "sinks.html",
            {
                "view": view,
                "history": lag_of(request),
                "notice": notice_text(notice, request.query_params),
                "page_name": "sinks",
            },
        )

    return await page(request, build)


def lag_of(request: Request) -> LagHistory:
    """The serving process's history of sink samples."""
    history: LagHistory = request.app.state.console_lag
    return history


def notice_text(notice: str | None, params: Any) -> str | None:
    """The sentence a redirect after an action asks the page to show (known ones only)."""
    template = NOTICES.get(notice or "")
    if template is None:
        return None
    fields = {
        name: str(params.get(name, "?"))[:100]
        for name in ("count", "sink", "positions", "dead_letters")
    }
    return template.format(**fields)


@console.get("/sinks/{sink}/replay")
async def confirm_replay(
    request: Request, sink: str, event: str | None = None, database: str | None = None
) -> Response:
    """The confirmation step before replaying a dead letter."""

    async def build(gateway: Gateway) -> Response:
        problem = sink_name_error(sink)
        if problem is not None:
            return bad_input(request, problem)
        if event is None or database is None:
            return bad_input(request, missing("event" if event is None else "database"))
        event_id = parse_event_id(event)
        if database not in outbox_pools(gateway) or event_id is None:
            return message(
                request,
                "Unknown dead letter",
                f"{event[:80]!r} in {database[:80]!r} is not a dead letter of this gateway.",
                404,
            )
        return render(
            request,
            "confirm_replay.html",
            {"sink": sink, "event": str(event_id), "database": database, "page_name": "sinks"},
        )

    return await page(request, build)


def parse_event_id(text: str) -> UUID | None:
    """The event id of a replay form, if it is a UUID."""
    try:
        return UUID(text)
    except ValueError:
        return None


@console.post("/sinks/{sink}/replay")
async def replay(request: Request, sink: str) -> Response:
    """Ask the relays to deliver one dead letter again."""
    form = await form_of(request)
    refused = forged(request, form) or refusal(request)
    if refused is not None:
        return refused

    async def build(gateway: Gateway) -> Response:
        problem = sink_name_error(sink)
        if problem is not None:
            return bad_input(request, problem)
        pool = outbox_pools(gateway).get(form.get("database", ""))
        event_id = parse_event_id(form.get("event", ""))
        if pool is None or event_id is None:
            return message(
                request,
                "Unknown dead letter",
                "The form names no dead letter of this gateway.",
                422,
            )
        async with asyncio.timeout(timeout_of(request)), pool.acquire() as connection:
            count = await tables.request_replay(connection, sink, event_id)
        if count == 0:
            return message(
                request,
                "Nothing to replay",
                f"Sink {sink!r} has no dead letter of event {event_id} waiting (replayed "
                "already?).",
                404,
            )
        return see_sinks({"notice": "replayed", "count": count, "sink": sink})

    return await page(request, build)


def see_sinks(params: dict[str, Any]) -> Response:
    """303 to the sinks page with a notice."""
    return RedirectResponse(f"/console/sinks?{urlencode(params)}", status_code=303)


@console.get("/sinks/{sink}/retire")
async def confirm_retire(request: Request, sink: str) -> Response:
    """The confirmation step before retiring a sink."""

    async def build(gateway: Gateway) -> Response:
        problem = sink_name_error(sink)
        if problem is not None:
            return bad_input(request, problem)
        configured = sink in request.app.state.settings.enabled_sinks
        return render(
            request,
            "confirm_retire.html",
            {"sink": sink, "configured": configured, "page_name": "sinks"},
        )

    return await page(request, build)


@console.post("/sinks/{sink}/retire")
async def retire(request: Request, sink: str) -> Response:
    """Remove a sink no relay serves: its positions and dead letters, in every database."""
    form = await form_of(request)
    refused = forged(request, form) or refusal(request)
    if refused is not None:
        return refused

    async def build(gateway: Gateway) -> Response:
        problem = sink_name_error(sink)
        if problem is not None:
            return bad_input(request, problem)
        positions = dead_letters = 0
        unknown = 0
        pools = outbox_pools(gateway)
        try:
            for pool in pools.values():
                async with asyncio.timeout(timeout_of(request)), pool.acquire() as connection:
                    try:
                        retired = await tables.retire_sink(connection, sink)
                    except UnknownSink:
                        unknown += 1
                        continue
                positions += retired.positions
                dead_letters += retired.dead_letters
        except SinkInUse as error:
            return message(request, "Sink in use", str(error), 409)
        if unknown == len(pools):
            return message(
                request, "Unknown sink", f"No sink named {sink!r} has positions in the outbox.", 404
            )
        return see_sinks(
            {
                "notice": "retired",
                "sink": sink,
                "positions": positions,
                "dead_letters": dead_letters,
            }
        )

    return await page(request, build)


@console.get("/orders")
async def find_order(request: Request, q: str | None = None) -> Response:
    """Look an order up by id or number."""

    async def build(gateway: Gateway) -> Response:
        if q is None:
            return render(request, "order_lookup.html", {"query": "", "page_name": "orders"})
        try:
            lookup = parse_lookup(q)
            order_id = lookup.order_id
            if order_id is None:
                assert lookup.order_number is not None
                order_id = await order_id_by_number(
                    list(gateway.order_pools().values()), lookup.order_number, timeout_of(request)
                )
        except OrderLookupError as error:
            status = 404 if str(error).startswith("no order") else 422
            return render(
                request,
                "order_lookup.html",
                {"query": q[:200], "error": str(error), "page_name": "orders"},
                status,
            )
        return RedirectResponse(f"/console/orders/{quote(str(order_id))}", status_code=303)

    return await page(request, build)


@console.get("/orders/{order_id}")
async def order_page(request: Request, order_id: str) -> Response:
    """An order in PostgreSQL beside each store's copy, and its history."""

    async def build(gateway: Gateway) -> Response:
        try:
            view = await order_view(
                list(gateway.order_pools().values()),
                request.app.state.sinks,
                parse_order_id(order_id),
                timeout_of(request),
            )
        except OrderLookupError as error:
            status = 404 if str(error).startswith("no order") else 422
            return render(
                request,
                "order_lookup.html",
                {"query": order_id[:200], "error": str(error), "page_name": "orders"},
                status,
            )
        return render(request, "order.html", {"view": view, "page_name": "orders"})

    return await page(request, build)


@console.get("/relays")
async def relays_page(request: Request) -> Response:
    """Relay instances with their heartbeat, and the leases of each sink."""

    async def build(gateway: Gateway) -> Response:
        view = await relays_view(outbox_pools(gateway), timeout_of(request))
        return render(request, "relays.html", {"view": view, "page_name": "relays"})

    return await page(request, build)


@console.get("/databases")
async def databases_page(request: Request) -> Response:
    """Replicas and shards, with their state and lag."""

    async def build(gateway: Gateway) -> Response:
        view = await databases_view(gateway, timeout_of(request))
        return render(request, "databases.html", {"view": view, "page_name": "databases"})

    return await page(request, build)


@console.get("/login")
async def login_form(request: Request, next: str = "/console") -> Response:
    """The login form (with a key configured)."""
    if api_key(request) is None:
        return RedirectResponse("/console", status_code=303)
    return login_page(request, 200, next_page=safe_next(next))


@console.post("/login")
async def login(request: Request) -> Response:
    """Check the key typed in and open a session: a signed cookie, never the key itself."""
    form = await form_of(request)
    refused = forged(request, form)
    if refused is not None:
        return refused
    key = api_key(request)
    if key is None:
        return RedirectResponse("/console", status_code=303)
    next_page = safe_next(form.get("next", "/console"))
    if not access.key_matches(key, form.get("key", "")):
        return login_page(request, 401, "That is not the API key.", next_page)
    gateway: Gateway | None = request.app.state.connection.gateway
    if gateway is None:
        return not_connected(request)
    session = access.new_session_id()
    try:
        await open_session(
            gateway.pool, session, access.SESSION_MAX_AGE_SECONDS, timeout_of(request)
        )
    except Exception as error:
        return failure(request, error)
    response = RedirectResponse(next_page, status_code=303)
    set_cookie(
        request,
        response,
        access.SESSION_COOKIE,
        access.session_token(key, int(access.now()), session),
        access.SESSION_MAX_AGE_SECONDS,
    )
    return response


@console.post("/logout")
async def logout(request: Request) -> Response:
    """End the session, in PostgreSQL (so that its cookie no longer counts anywhere) and in
    the browser; if PostgreSQL does not answer, the cookie stays, to try again."""
    form = await form_of(request)
    refused = forged(request, form)
    if refused is not None:
        return refused
    session = session_id(request)
    if session is not None:
        gateway: Gateway | None = request.app.state.connection.gateway
        if gateway is None:
            return not_connected(request)
        try:
            await close_session(gateway.pool, session, timeout_of(request))
        except Exception as error:
            return failure(request, error)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(access.SESSION_COOKIE, path="/console", httponly=True, samesite="strict")
    return response
