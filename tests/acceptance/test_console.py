"""The operator console in a real browser (Debian's chromium through Playwright), served by
``fanout serve`` over a real database, with MongoDB and Redis as sinks and a relay run in
this process."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    async_playwright,
)

from adapters.base import Delivery, EventEnvelope, Health, Sink
from gateway import Gateway, Order
from support.api_process import ApiServer, api_server, write_config
from support.eventually import eventually
from support.shop import Shop
from support.stores import drop_namespace, make_sink, store_settings
from tests.acceptance.conftest import DatabaseFactory, create_migrated_database, settings_for
from tests.acceptance.relay_support import World

API_KEY = "console-test-key-0123456789"
CHROMIUM = "/usr/bin/chromium"
SINKS = ("mongodb", "redis")


class RejectingSink:
    """A sink that refuses every event as a permanent failure, under the name of a real one."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def health(self) -> Health:
        return Health(True, "rejects every event")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        return [Delivery.permanent("rejected: the store refuses this mapping") for _ in batch]


@dataclass
class Console:
    """The server, the database behind it, and what the browser reported."""

    server: ApiServer
    world: World
    tag: str
    errors: list[str] = field(default_factory=list)
    opened: list[Sink] = field(default_factory=list)

    def sink(self, kind: str) -> Sink:
        """A client of the real store ``kind`` in this module's namespace, closed at the end."""
        sink = make_sink(kind, self.tag)
        self.opened.append(sink)
        return sink


@pytest.fixture(scope="module")
async def console(
    create_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    url = await create_migrated_database(create_database)
    tag = uuid.uuid4().hex[:10]
    config = write_config(
        tmp_path_factory.mktemp("console"),
        {
            "postgres": {"url": url},
            "api": {"key": API_KEY},
            "sinks": {kind: store_settings(kind, tag) for kind in SINKS},
        },
    )
    settings = settings_for(url)
    async with await Gateway.connect(settings) as gateway, api_server(config) as server:
        running = Console(server, World(settings, gateway, Shop(gateway)), tag)
        try:
            yield running
        finally:
            for opened in running.opened:
                await opened.close()
            for kind in SINKS:
                sink = make_sink(kind, tag)
                await drop_namespace(sink)
                await sink.close()
    assert API_KEY not in server.server.log_text


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless (no browser download)."""
    arguments = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=arguments)
        yield launched
        await launched.close()


def watch(page: Page, errors: list[str]) -> Page:
    """Record the page's console errors and failed requests in ``errors``."""

    def on_console(entry: ConsoleMessage) -> None:
        if entry.type == "error":
            errors.append(f"console: {entry.text}")

    def on_failed(request: Request) -> None:
        errors.append(f"request failed: {request.url} {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("requestfailed", on_failed)
    return page


@pytest.fixture(scope="module")
async def signed_in(browser: Browser, console: Console) -> AsyncIterator[BrowserContext]:
    """A browser context logged in to the console through its form."""
    context = await browser.new_context(base_url=console.server.url)
    page = await context.new_page()  # its first answer is the login form's 401
    await page.goto("/console/sinks")
    await page.fill("#key", API_KEY)
    await page.click("form.login button")
    await page.wait_for_url("**/console/sinks")
    await page.close()
    yield context
    await context.close()


async def new_page(context: BrowserContext, console: Console) -> Page:
    return watch(await context.new_page(), console.errors)


async def place_order(console: Console) -> Order:
    shop = console.world.shop
    customer = await shop.customer()
    product = await shop.product(price="19.90", stock=10)
    return await console.world.gateway.place_order(shop.order(customer, (product, 2)))


async def test_the_console_needs_a_login_and_a_csrf_token(
    browser: Browser, console: Console
) -> None:
    async with httpx.AsyncClient(base_url=console.server.url, timeout=30) as anonymous:
        page_without_session = await anonymous.get("/console/sinks")
        login_without_token = await anonymous.post(
            "/console/login",
            data={"key": API_KEY},
            headers={"Origin": console.server.url},
        )
        bearer_is_not_a_session = await anonymous.get(
            "/console", headers={"Authorization": f"Bearer {API_KEY}"}
        )
    assert page_without_session.status_code == 401
    assert 'name="key"' in page_without_session.text
    assert login_without_token.status_code == 403
    assert "CSRF token" in login_without_token.text
    assert "fanout_console_session" not in login_without_token.headers.get("set-cookie", "")
    assert bearer_is_not_a_session.status_code == 401

    context = await browser.new_context(base_url=console.server.url)
    try:
        page = await context.new_page()
        await page.goto("/console")
        await page.fill("#key", "not-the-key-at-all-0000")
        async with page.expect_navigation() as navigation:
            await page.click("form.login button")
        answer = await navigation.value
        assert answer is not None and answer.status == 401
        assert await page.inner_text("[role=alert]") == "That is not the API key."
        assert API_KEY not in await page.content()

        await page.fill("#key", API_KEY)
        await page.click("form.login button")
        await page.wait_for_url(re.compile(r".*/console$"))
        assert await page.inner_text("h1") == "Overview"
        cookies = {c["name"]: c for c in await context.cookies()}
        session = cookies["fanout_console_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert API_KEY not in session["value"]
        assert API_KEY not in page.url
    finally:
        await context.close()


async def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(
    console: Console, signed_in: BrowserContext
) -> None:
    await console.world.drain(console.sink("mongodb"), console.sink("redis"))
    cookies = {c["name"]: c["value"] for c in await signed_in.cookies()}
    url = console.server.url
    async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=30) as client:
        without_token = await client.post(
            "/console/sinks/redis/retire", data={}, headers={"Origin": url}
        )
        from_elsewhere = await client.post(
            "/console/sinks/redis/retire",
            data={"csrf_token": cookies["fanout_console_csrf"]},
            headers={"Origin": "http://attacker.example"},
        )
        signed_in_page = await client.get("/console/relays")
    assert without_token.status_code == 403 and "CSRF token" in without_token.text
    assert from_elsewhere.status_code == 403 and "Origin" in from_elsewhere.text
    assert signed_in_page.status_code == 200
    positions = "SELECT count(*) FROM relay_positions WHERE sink = 'redis'"
    assert await console.world.gateway.pool.fetchval(positions) > 0


async def test_pages_load_cleanly_and_the_lag_chart_draws(
    console: Console, signed_in: BrowserContext
) -> None:
    page = await new_page(signed_in, console)
    for path, heading in [
        ("/console", "Overview"),
        ("/console/relays", "Relays and leases"),
        ("/console/databases", "Replicas and shards"),
        ("/console/orders", "Find an order"),
    ]:
        response = await page.goto(path)
        assert response is not None and response.status == 200, path
        assert await page.inner_text("h1") == heading

    async def chart_has_points() -> bool:
        await page.goto("/console/sinks")
        points = await page.get_attribute("#sink-mongodb svg.lag-chart", "data-points")
        return int(points or 0) >= 2

    await eventually(chart_has_points, within=30)
    line = await page.get_attribute("#sink-mongodb svg.lag-chart polyline", "points")
    assert line is not None and len(line.split()) >= 2
    assert "since this process started, at most one hour" in await page.inner_text("main")
    assert console.errors == []


async def test_an_order_missing_from_a_store_is_highlighted_and_its_dead_letter_replays(
    console: Console, signed_in: BrowserContext
) -> None:
    order = await place_order(console)
    await console.world.drain(console.sink("mongodb"), RejectingSink("redis"))
    page = await new_page(signed_in, console)

    await page.goto("/console/orders")
    await page.fill("#q", order.order_number)
    await page.click("form.lookup button")
    await page.wait_for_url(f"**/console/orders/{order.id}")
    postgres = page.locator("tr[data-store=postgresql] .version")
    mongodb = page.locator("tr[data-store=mongodb]")
    redis = page.locator("tr[data-store=redis]")
    assert await postgres.inner_text() == str(order.version)
    assert await mongodb.get_attribute("data-standing") == "in step"
    assert await mongodb.locator(".version").inner_text() == str(order.version)
    assert await redis.get_attribute("data-standing") == "missing"
    assert "lagging" in (await redis.get_attribute("class") or "")
    assert "order.placed" in await page.inner_text("table.history")

    await page.goto("/console/sinks")
    letter = page.locator(f"table.dead-letters tr[data-sink=redis]:has-text('{order.id}')")
    assert "rejected: the store refuses this mapping" in await letter.inner_text()
    await letter.locator("a.replay").click()
    await page.wait_for_url("**/console/sinks/redis/replay?*")
    async with page.expect_navigation() as navigation:
        await page.click("button.confirm")
    done = await navigation.value
    assert done is not None and done.status == 200, (page.url, await page.content())
    assert "Replay of 1 dead letter(s) of sink redis requested" in await page.inner_text(".notice")

    await console.world.drain(console.sink("redis"))  # the fix: the real store
    await page.goto(f"/console/orders/{order.id}")
    assert await redis.get_attribute("data-standing") == "in step"
    assert await redis.locator(".version").inner_text() == str(order.version)
    await page.goto("/console/sinks")
    assert await page.locator(f"table.dead-letters tr:has-text('{order.id}')").count() == 0
    assert console.errors == []


async def test_bad_lookups_get_a_clear_message(console: Console, signed_in: BrowserContext) -> None:
    errors: list[str] = []
    page = watch(await signed_in.new_page(), errors)
    cases = [
        ("/console/orders/not-a-uuid", 422, "'not-a-uuid' is not an order id (a UUID)"),
        (f"/console/orders/{uuid.uuid4()}", 404, "no order has the id"),
        ("/console/orders?q=ORD-00000000-NOPE", 404, "no order has the number 'ORD-00000000-NOPE'"),
        ("/console/orders?q=%3Cscript%3E", 422, "is neither an order id (a UUID) nor an order"),
        ("/console/sinks/redis/replay?event=x&database=main", 404, "is not a dead letter"),
    ]
    for path, status, text in cases:
        response = await page.goto(path)
        assert response is not None and response.status == status, path
        assert text in await page.inner_text("[role=alert]"), path
    # Chromium reports each 4xx document as a console error; nothing else may fail.
    assert [e for e in errors if "the server responded with a status of 4" not in e] == []


async def test_a_running_relay_shows_with_its_heartbeat_and_leased_partitions(
    console: Console, signed_in: BrowserContext
) -> None:
    sinks = [console.sink("mongodb"), console.sink("redis")]
    relay = console.world.relay(*sinks)
    running = asyncio.create_task(relay.run())
    page = await new_page(signed_in, console)
    try:

        async def leases_shown() -> bool:
            await page.goto("/console/relays")
            rows = page.locator("table.leases tr", has_text=relay.instance_id)
            return await rows.count() == len(sinks)

        await eventually(leases_shown, within=30)
        instance = page.locator("table.instances tr", has_text=relay.instance_id)
        assert await instance.count() == 1
        assert "ago" in await instance.inner_text()
    finally:
        relay.stop()
        await asyncio.wait_for(running, 30)
    assert console.errors == []


@asynccontextmanager
async def logged_in(console: Console) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a session of its own, opened through the login form."""
    url = console.server.url
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await client.get("/console/login")
        answer = await client.post(
            "/console/login",
            data={"key": API_KEY, "csrf_token": client.cookies["fanout_console_csrf"]},
            headers={"Origin": url},
        )
        assert answer.status_code == 303, answer.text
        yield client


async def test_logging_out_ends_the_session_on_the_server(console: Console) -> None:
    async with logged_in(console) as first, logged_in(console) as second:
        first_session = first.cookies["fanout_console_session"]
        cookie = next(c for c in first.cookies.jar if c.name == "fanout_console_session")
        assert cookie.path == "/console" and API_KEY not in first_session
        assert first_session != second.cookies["fanout_console_session"]
        logout = await first.post(
            "/console/logout",
            data={"csrf_token": first.cookies["fanout_console_csrf"]},
            headers={"Origin": console.server.url},
        )
        assert logout.status_code == 303
        first.cookies.set("fanout_console_session", first_session, path="/console")
        after_logout = await first.get("/console/relays")
        other_session = await second.get("/console/relays")
    assert after_logout.status_code == 401 and 'name="key"' in after_logout.text
    assert other_session.status_code == 200


async def test_bad_action_input_gets_a_page_naming_the_field(console: Console) -> None:
    async with logged_in(console) as client:
        token = client.cookies["fanout_console_csrf"]
        origin = {"Origin": console.server.url}
        answers = {
            "retire": await client.post(
                "/console/sinks/bad%00sink/retire", data={"csrf_token": token}, headers=origin
            ),
            "replay": await client.post(
                "/console/sinks/bad%00sink/replay",
                data={"csrf_token": token, "event": str(uuid.uuid4()), "database": "main"},
                headers=origin,
            ),
            "confirm retire": await client.get("/console/sinks/Bad%00Sink/retire"),
            "confirm replay": await client.get(
                f"/console/sinks/bad%00sink/replay?event={uuid.uuid4()}&database=main"
            ),
            "missing event": await client.get("/console/sinks/redis/replay?database=main"),
        }
    for case, answer in answers.items():
        assert answer.status_code == 422, (case, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith("text/html"), case
    assert "sink" in answers["retire"].text and "letters, digits" in answers["retire"].text
    assert "event" in answers["missing event"].text
