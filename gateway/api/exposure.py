"""Who can reach the API: serving it beyond the machine without a key must be chosen, and
without a key only this machine's own names may be asked for."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.problems import Problem, problem_response
from gateway.configuration.settings import ApiSettings
from gateway.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_NOT_IN_A_HOST = frozenset("@/?#\\ \t")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only:
    127.0.0.0/8, ::1 or localhost."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(api: ApiSettings, host: str | None, source: Path | str | None) -> None:
    """Raise a :class:`ConfigError` naming ``api.key`` if the API would listen on ``host``
    (default: ``api.host``) beyond loopback without a key and without
    ``api.allow_unauthenticated``; ``source`` is the configuration file, for the message."""
    address = api.host if host is None else host
    if api.key is not None or api.allow_unauthenticated or is_loopback(address):
        return
    raise ConfigError(
        "api.key",
        f"must be set to serve on {address!r}, which is not a loopback address; or set "
        "api.allow_unauthenticated: true to serve without authentication",
        source,
    )


def host_allowed(host: str | None, api_host: str) -> bool:
    """Whether a request's ``Host`` header (``host``, with or without a port) names this
    machine (localhost, 127.0.0.0/8, ``[::1]``) or ``api_host``.

    A server without a key must check it: a web page whose own name its owner pointed at
    127.0.0.1 (DNS rebinding) reaches a loopback server as the same origin, and its requests
    then carry that name.
    """
    if not host or any(character in _NOT_IN_A_HOST for character in host):
        return False
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    if not name:
        return False
    return is_loopback(name) or name == api_host.strip("[]").lower()


def host_refusal(host: str | None) -> str:
    """Why a request under ``host`` is refused (for the answer)."""
    return (
        f"Without api.key this server answers only to the names of this machine (localhost, "
        f"127.0.0.1, [::1]) and api.host, and this request asked for {(host or '')[:100]!r}; "
        "set api.key to serve it under other names"
    )


class LocalHostNamesOnly:
    """Refuse (403) a request whose ``Host`` header :func:`host_allowed` does not accept: for
    an API served on loopback without a key."""

    def __init__(self, app: ASGIApp, api_host: str) -> None:
        self.app = app
        self.api_host = api_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host")
            if not host_allowed(host, self.api_host):
                problem = Problem(403, "host-not-allowed", "Host not allowed", host_refusal(host))
                await problem_response(None, problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
