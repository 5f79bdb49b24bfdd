"""The console's access rules: signed session tokens, CSRF tokens, same-origin requests,
where a login may lead, and loopback-only serving without a key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.api.console import access
from gateway.api.console.pages import safe_next
from gateway.configuration.settings import Settings

KEY = "console-unit-key-0123456789"
# Nothing listens there: the API starts anyway and keeps connecting in the background.
UNREACHABLE = "postgresql://nobody@127.0.0.1:9/none"


def test_a_session_token_is_signed_by_the_key_and_never_holds_it() -> None:
    token = access.session_token(KEY, 1_000)

    assert KEY not in token
    assert access.session_valid(KEY, token, now=1_000 + 60, max_age=3600)
    assert not access.session_valid("another-key-0123456789", token, now=1_060, max_age=3600)


@pytest.mark.parametrize(
    ("token", "now"),
    [
        (None, 1_060.0),
        ("", 1_060.0),
        ("1000", 1_060.0),
        ("abc.def", 1_060.0),
        ("1000." + "0" * 64, 1_060.0),  # a forged signature
        (access.session_token(KEY, 1_000), 1_000 + 3601.0),  # expired
        (access.session_token(KEY, 2_000), 1_000.0),  # issued in the future
    ],
)
def test_a_session_token_that_is_forged_expired_or_absent_is_refused(
    token: str | None, now: float
) -> None:
    assert not access.session_valid(KEY, token, now=now, max_age=3600)


def test_the_csrf_token_of_a_form_must_be_the_browsers() -> None:
    token = access.new_csrf_token()

    assert access.csrf_valid(token, token)
    assert token != access.new_csrf_token()
    assert not access.csrf_valid(token, access.new_csrf_token())
    assert not access.csrf_valid(None, token)
    assert not access.csrf_valid(token, None)
    assert not access.csrf_valid("", "")


@pytest.mark.parametrize(
    ("origin", "referer", "expected"),
    [
        ("http://127.0.0.1:8000", None, True),
        ("HTTP://127.0.0.1:8000", None, True),
        ("http://evil.example", "http://127.0.0.1:8000/console", False),  # Origin decides
        ("https://127.0.0.1:8000", None, False),
        (None, "http://127.0.0.1:8000/console/sinks", True),
        (None, "http://127.0.0.1:8000.evil.example/console", False),
        (None, None, False),
        ("null", None, False),
    ],
)
def test_a_state_changing_request_must_come_from_the_consoles_own_origin(
    origin: str | None, referer: str | None, expected: bool
) -> None:
    assert access.same_origin(origin, referer, "127.0.0.1:8000", "http") is expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/console/sinks", "/console/sinks"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/metrics", "/console"),
        ("/console\\@evil.example", "/console"),
    ],
)
def test_a_login_leads_only_to_a_console_page(given: str, expected: str) -> None:
    assert safe_next(given) == expected


@contextmanager
def client_of(settings: Settings, host: str) -> Iterator[TestClient]:
    """The app over ``settings``, started, asked from ``host``."""
    with TestClient(create_app(settings), client=(host, 50_000)) as client:
        yield client


@pytest.fixture
def without_key() -> Settings:
    return Settings.model_validate({"postgres": {"url": UNREACHABLE}})


def test_without_a_key_the_console_refuses_a_client_beyond_loopback(without_key: Settings) -> None:
    with client_of(without_key, "203.0.113.7") as client:
        response = client.get("/console/sinks")

    assert response.status_code == 403
    assert "loopback" in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_without_a_key_a_loopback_client_passes_the_guard(without_key: Settings) -> None:
    with client_of(without_key, "127.0.0.1") as client:
        response = client.get("/console/sinks")

    # Past the guard: what stops it is the database the test gives it, not the access rule.
    assert response.status_code == 503
    assert "PostgreSQL is not connected yet" in response.text


def test_with_a_key_every_page_asks_for_it_and_a_wrong_key_is_refused() -> None:
    settings = Settings.model_validate({"postgres": {"url": UNREACHABLE}, "api": {"key": KEY}})
    with client_of(settings, "127.0.0.1") as client:
        page = client.get("/console/orders/not-a-uuid")
        csrf = client.cookies[access.CSRF_COOKIE]
        wrong = client.post(
            "/console/login",
            data={"key": "wrong-key-0123456789", "csrf_token": csrf},
            headers={"Origin": "http://testserver"},
        )
        right = client.post(
            "/console/login",
            data={"key": KEY, "csrf_token": csrf, "next": "/console/relays"},
            headers={"Origin": "http://testserver"},
            follow_redirects=False,
        )

    assert page.status_code == 401 and 'name="key"' in page.text
    assert wrong.status_code == 401 and "That is not the API key." in wrong.text
    assert KEY not in wrong.text
    assert right.status_code == 303 and right.headers["location"] == "/console/relays"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert KEY not in cookie
