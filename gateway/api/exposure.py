"""Who can reach the API: serving it beyond the machine without a key must be chosen."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from gateway.configuration.settings import ApiSettings
from gateway.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


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
