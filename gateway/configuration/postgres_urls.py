"""PostgreSQL URLs that name several hosts: a cluster's nodes, of which one is the primary.

asyncpg (like libpq) takes ``postgresql://user:password@h1:p1,h2:p2/db`` and, with
``target_session_attrs``, connects to the first host in the role asked for. The gateway's
writes must reach the primary, so a URL naming several hosts must ask for it; each host on its
own is a candidate standby for reads.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SESSION_ATTRS_PARAMETER = "target_session_attrs"
SESSION_ATTRS = frozenset(
    {"any", "primary", "standby", "prefer-standby", "read-write", "read-only"}
)
"""The values asyncpg accepts for ``target_session_attrs``."""
WRITABLE_SESSION_ATTRS = frozenset({"primary", "read-write"})
"""The values that make a connection reach a server that takes writes."""


def hosts_of(url: str) -> list[str]:
    """The ``host[:port]`` entries of ``url``'s authority, in order (one for most URLs)."""
    netloc = urlsplit(url).netloc
    hosts = netloc.rpartition("@")[2]
    return [host for host in hosts.split(",") if host]


def session_attrs_of(url: str) -> str | None:
    """The ``target_session_attrs`` ``url`` asks for, if any."""
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == SESSION_ATTRS_PARAMETER:
            return value
    return None


def writable_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the URL that writes go to, or None.

    Refused: a ``target_session_attrs`` asyncpg does not know, one that picks a standby, and
    several hosts without one that picks the primary (the first host that answers would be
    used, standby or not).
    """
    attrs = session_attrs_of(url)
    if attrs is not None and attrs not in SESSION_ATTRS:
        known = ", ".join(sorted(SESSION_ATTRS))
        return f"target_session_attrs={attrs!r} is not one of {known}"
    if attrs is not None and attrs not in WRITABLE_SESSION_ATTRS | {"any"}:
        return (
            f"target_session_attrs={attrs} would send writes to a standby; "
            "use read-write (or primary)"
        )
    if len(hosts_of(url)) > 1 and attrs not in WRITABLE_SESSION_ATTRS:
        return (
            "the URL names several hosts: add target_session_attrs=read-write so that "
            "writes reach the primary whichever host it is"
        )
    return None


def one_url_per_host(url: str) -> list[str]:
    """``url`` once for each of its hosts, without ``target_session_attrs`` (each URL reaches
    that host whatever its role)."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    query = urlencode(
        [
            (name, value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
            if name != SESSION_ATTRS_PARAMETER
        ]
    )
    return [
        urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}", query=query))
        for host in hosts_of(url)
    ]
