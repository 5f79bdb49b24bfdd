"""``fanout doctor``'s tables: a shard's replicas are shown under their shard."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from gateway.cli.doctor_tables import _render_shard


def shard(name: str, replicas: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "ok": True, "latency_ms": 1.5, "sinks": [], "replicas": replicas}


def rendered(report: dict[str, Any]) -> str:
    console = Console(width=200, record=True)
    _render_shard(report, console)
    return console.export_text()


def test_a_shard_s_replicas_are_listed_under_it_and_a_shard_without_any_lists_none() -> None:
    replica = {
        "shard": "alpha",
        "replica": "postgresql://app:***@standby-a/shop",
        "state": "streaming",
        "in_use": True,
        "lag_bytes": 0,
        "lag_seconds": 0.0,
        "reads": 7,
        "error": None,
    }
    text = rendered(shard("alpha", [replica]))
    assert "Shard alpha: its replicas" in text
    assert "postgresql://app:***@standby-a/shop" in text and "streaming" in text
    assert "its replicas" not in rendered(shard("beta", []))
