"""Who may use the console: a session cookie signed with the API key, CSRF tokens, the origin
of a state-changing request, and loopback-only serving when no key is configured.

The session cookie holds when it was issued and an HMAC of that time keyed by the API key, so
every worker of ``fanout serve`` can check it, changing the key ends every session, and the
key itself never leaves the server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

SESSION_COOKIE = "fanout_console_session"
CSRF_COOKIE = "fanout_console_csrf"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_SECONDS = 12 * 3600
_SESSION_PURPOSE = b"fanout-console-session:"


def session_token(key: str, issued_at: int) -> str:
    """A session token issued at ``issued_at`` (Unix seconds), signed with ``key``."""
    return f"{issued_at}.{_signature(key, issued_at)}"


def session_valid(key: str, token: str | None, now: float, max_age: int) -> bool:
    """Whether ``token`` was signed with ``key`` and issued within ``max_age`` seconds of
    ``now`` (and not in the future)."""
    if not token:
        return False
    issued, _, signature = token.partition(".")
    if not issued.isdigit():
        return False
    issued_at = int(issued)
    if not 0 <= now - issued_at <= max_age:
        return False
    return hmac.compare_digest(signature, _signature(key, issued_at))


def _signature(key: str, issued_at: int) -> str:
    message = _SESSION_PURPOSE + str(issued_at).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def key_matches(key: str, given: str) -> bool:
    """Whether the key typed in the login form is the API key (in constant time)."""
    return hmac.compare_digest(given.encode(), key.encode())


def new_csrf_token() -> str:
    """A fresh random token, set as a cookie and repeated in every form (double submit)."""
    return secrets.token_urlsafe(32)


def csrf_valid(cookie: str | None, submitted: str | None) -> bool:
    """Whether a form's token is the one its browser holds in the CSRF cookie."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def same_origin(origin: str | None, referer: str | None, host: str | None, scheme: str) -> bool:
    """Whether a state-changing request comes from the console's own pages: its ``Origin``
    (or, without one, its ``Referer``) names this server's scheme and ``Host``. A request that
    carries neither is refused."""
    if not host:
        return False
    expected = f"{scheme}://{host}".lower()
    if origin:
        return origin.lower() == expected
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == expected
    return False


def now() -> float:
    """The current time, in Unix seconds."""
    return time.time()
