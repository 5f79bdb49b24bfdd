"""Which sinks an operator is warned of."""

from __future__ import annotations

from gateway.operations.sinks import unserved_warnings


def row(sink: str, unserved_seconds: float | None) -> dict[str, object]:
    return {"sink": sink, "unserved_seconds": unserved_seconds}


def test_only_unserved_sinks_the_configuration_does_not_name_are_warned_of() -> None:
    rows = [row("served", None), row("removed", 7200.0), row("configured-but-idle", 60.0)]

    [warning] = unserved_warnings(rows, configured={"served", "configured-but-idle"})

    assert "'removed'" in warning and "2 h 0 min" in warning
    assert "fanout sinks retire removed" in warning
