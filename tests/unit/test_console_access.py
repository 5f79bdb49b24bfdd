"""The console's access rules: signed session tokens, CSRF tokens, same-origin requests,
where a login may lead, loopback-only serving without a key, and login before anything else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.api.console import access
from gateway.api.console.pages import safe_next
from gateway.api.console.routes import is_unanswered
from gateway.configuration.settings import Settings

KEY = "console-unit-key-0123456789"
SESSION = access.new_session_id()
# Nothing listens there: the API starts anyway and keeps connecting in the background.
UNREACHABLE = "postgresql://nobody@127.0.0.1:9/none"


def test_a_session_token_is_signed_by_the_key_and_never_holds_it() -> None:
    token = access.session_token(KEY, 1_000, SESSION)

    assert KEY not in token
    assert access.verified_session(KEY, token, now=1_000 + 60, max_age=3600) == SESSION
    assert access.verified_session("another-key-0123456789", token, now=1_060, max_age=3600) is None


def test_two_logins_in_the_same_second_get_different_sessions() -> None:
    first, second = access.new_session_id(), access.new_session_id()

    assert first != second
    assert access.session_token(KEY, 1_000, first) != access.session_token(KEY, 1_000, second)


@pytest.mark.parametrize(
    ("token", "now"),
    [
        (None, 1_060.0),
        ("", 1_060.0),
        ("1000", 1_060.0),
        ("abc.def", 1_060.0),
        (f"1000.{SESSION}." + "0" * 64, 1_060.0),  # a forged signature
        (access.session_token(KEY, 1_000, access.new_session_id())[:-1] + "x", 1_060.0),
        (access.session_token(KEY, 1_000, SESSION), 1_000 + 3601.0),  # expired
        (access.session_token(KEY, 2_000, SESSION), 1_000.0),  # issued in the future
    ],
)
def test_a_session_token_that_is_forged_expired_or_absent_is_refused(
    token: str | None, now: float
) -> None:
    assert access.verified_session(KEY, token, now=now, max_age=3600) is None


@pytest.mark.parametrize(
    "token",
    [
        f"\u00b2.{SESSION}.abc",  # a digit to str.isdigit(), not to int()
        "9" * 5000 + f".{SESSION}.abc",  # more digits than int() converts
        f"{int(time.time())}.{SESSION}.\u00e9",  # a signature beyond ASCII
        f"{int(time.time())}.\u00e9.abc",
        f"{int(time.time())}.{SESSION}.abc.def",
    ],
    ids=["superscript-digit", "5000-digits", "non-ascii-signature", "non-ascii-id", "four-parts"],
)
def test_a_malformed_session_token_is_no_session(token: str) -> None:
    assert access.verified_session(KEY, token, time.time(), access.SESSION_MAX_AGE_SECONDS) is None


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
def client_of(
    settings: Settings, host: str, base_url: str = "http://127.0.0.1:8000"
) -> Iterator[TestClient]:
    """The app over ``settings``, started, asked from ``host`` at ``base_url``."""
    with TestClient(create_app(settings), base_url=base_url, client=(host, 50_000)) as client:
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
            headers={"Origin": "http://127.0.0.1:8000"},
        )
        right = client.post(
            "/console/login",
            data={"key": KEY, "csrf_token": csrf, "next": "/console/relays"},
            headers={"Origin": "http://127.0.0.1:8000"},
            follow_redirects=False,
        )

    assert page.status_code == 401 and 'name="key"' in page.text
    assert wrong.status_code == 401 and "That is not the API key." in wrong.text
    assert KEY not in wrong.text
    # A session is recorded in PostgreSQL, which this test's server cannot reach.
    assert right.status_code == 503 and "PostgreSQL is not connected yet" in right.text
    assert access.SESSION_COOKIE not in right.headers.get("set-cookie", "")


@pytest.mark.parametrize("opt_out", [False, True], ids=["loopback", "allow-unauthenticated"])
def test_without_a_key_a_page_asked_under_another_host_name_is_refused(opt_out: bool) -> None:
    settings = Settings.model_validate(
        {"postgres": {"url": UNREACHABLE}, "api": {"allow_unauthenticated": opt_out}}
    )
    rebound = "http://rebind.attacker.example:8000"
    with client_of(settings, "127.0.0.1", base_url=rebound) as client:
        page = client.get("/console/sinks")
        action = client.post(
            "/console/sinks/redis/retire",
            data={"csrf_token": "token"},
            headers={"Origin": rebound},
            cookies={access.CSRF_COOKIE: "token"},
        )

    for response in (page, action):
        assert response.status_code == 403
        assert "rebind.attacker.example:8000" in response.text
        assert "localhost" in response.text


@pytest.mark.parametrize(
    "cookie",
    [
        f"\u00b2.{SESSION}.abc".encode("latin-1"),
        ("9" * 5000 + f".{SESSION}.abc").encode(),
        f"{int(time.time())}.{SESSION}.\u00e9".encode("latin-1"),
    ],
    ids=["superscript-digit", "5000-digits", "non-ascii-signature"],
)
def test_a_malformed_session_cookie_gets_the_login_form(cookie: bytes) -> None:
    settings = Settings.model_validate({"postgres": {"url": UNREACHABLE}, "api": {"key": KEY}})
    with client_of(settings, "127.0.0.1") as client:
        response = client.get(
            "/console/sinks", headers={b"cookie": access.SESSION_COOKIE.encode() + b"=" + cookie}
        )

    assert response.status_code == 401
    assert 'name="key"' in response.text


@pytest.mark.parametrize(
    "path",
    ["/console/sinks/redis/replay", "/console/sinks/redis/replay?event=x"],
)
def test_a_page_asks_for_the_login_before_it_reads_its_parameters(path: str) -> None:
    settings = Settings.model_validate({"postgres": {"url": UNREACHABLE}, "api": {"key": KEY}})
    with client_of(settings, "127.0.0.1") as client:
        response = client.get(path)

    assert response.status_code == 401
    assert 'name="key"' in response.text


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError(), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.CharacterNotInRepertoireError("invalid byte sequence"), False),
        (asyncpg.UndefinedTableError('relation "x" does not exist'), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_a_database_that_does_not_answer_is_a_503(error: Exception, expected: bool) -> None:
    assert is_unanswered(error) is expected
