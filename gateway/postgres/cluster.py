"""What the gateway can see of a PostgreSQL cluster from its primary: which node it is, its
timeline (a new one starts at every promotion), when the last promotion happened, and each
standby streaming from it.

Read from PostgreSQL itself, so it holds whatever manages the cluster (Patroni, a managed
service, a hand-run standby).
"""

from __future__ import annotations

import datetime
from typing import Any

import asyncpg

from gateway.postgres.database import Connection
from gateway.postgres.queries import query
from gateway.postgres.replicas import primary_replication


async def primary_view(connection: Connection) -> dict[str, Any]:
    """The node ``connection`` reached (``address``: ``host:port``, or the socket's when
    connected over one), its ``timeline``, ``last_promotion_at`` (ISO 8601; None when no
    standby was ever promoted or the role may not list the WAL folder), and ``standbys``."""
    row = await connection.fetchrow(query("primary_identity"))
    assert row is not None
    return {
        "address": node_address(row["address"], row["port"]),
        "timeline": row["timeline"],
        "last_promotion_at": _iso(await _last_promotion(connection)),
        "standbys": await primary_replication(connection),
    }


def node_address(address: str | None, port: int | None) -> str:
    """``host:port`` of a server as it sees itself (``local`` over a Unix socket)."""
    if address is None:
        return "local"
    host = address.split("/")[0]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _last_promotion(connection: Connection) -> datetime.datetime | None:
    try:
        promoted: datetime.datetime | None = await connection.fetchval(query("last_promotion"))
    except asyncpg.InsufficientPrivilegeError:
        return None
    return promoted


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
