"""Who may use the console: a session cookie signed with the API key, CSRF tokens, the origin
of a state-changing request, and loopback-only serving when no key is configured.

The session cookie holds when it was issued, a random session id, and an HMAC of both keyed by
the API key, so every worker of ``fanout serve`` can check it, changing the key ends every
session, and the key itself never leaves the server. The session id is also kept in
PostgreSQL while the session is open (``sessions.py``), so that logging out ends it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from urllib.parse import urlsplit

SESSION_COOKIE = "fanout_console_session"
CSRF_COOKIE = "fanout_console_csrf"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_SECONDS = 12 * 3600
_SESSION_PURPOSE = b"fanout-console-session:"
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
# Unix seconds have 10 digits until the year 2286: anything longer is not a login time.
_MAX_ISSUED_DIGITS = 12


def new_session_id() -> str:
    """A fresh random session id (256 bits), one per login."""
    return secrets.token_urlsafe(32)


def session_token(key: str, issued_at: int, session_id: str) -> str:
    """The token of session ``session_id`` issued at ``issued_at`` (Unix seconds), signed
    with ``key``."""
    return f"{issued_at}.{session_id}.{_signature(key, issued_at, session_id)}"


def verified_session(key: str, token: str | None, now: float, max_age: int) -> str | None:
    """The session id of ``token`` if it was signed with ``key`` and issued within ``max_age``
    seconds of ``now`` (and not in the future); ``None`` for any other token, however
    malformed."""
    if not token or not token.isascii():
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    issued, session_id, signature = parts
    if not _SESSION_ID.fullmatch(session_id):
        return None
    if not (issued.isdigit() and len(issued) <= _MAX_ISSUED_DIGITS):
        return None
    issued_at = int(issued)
    if not 0 <= now - issued_at <= max_age:
        return None
    expected = _signature(key, issued_at, session_id)
    return session_id if hmac.compare_digest(signature.encode(), expected.encode()) else None


def _signature(key: str, issued_at: int, session_id: str) -> str:
    message = _SESSION_PURPOSE + f"{issued_at}.{session_id}".encode()
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
