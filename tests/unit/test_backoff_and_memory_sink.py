"""Backoff, and the memory sink's version guard and failure injection: no I/O."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.base import Outcome, Sink
from adapters.memory import MemorySink
from gateway.backoff import Backoff
from tests.unit.relay_fakes import envelope as order_event


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.ceiling(10_000) == 1.0


def test_backoff_delays_are_jittered_within_the_ceiling() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.delay(4) for _ in range(500)]
    assert all(0.0 <= d <= 0.8 for d in delays)
    assert len({round(d, 6) for d in delays}) > 400


async def test_memory_sink_is_a_sink_and_keeps_the_newest_version() -> None:
    sink = MemorySink()
    assert isinstance(sink, Sink)
    newer, older = order_event("o1", 5, "shipped"), order_event("o1", 3, "confirmed")

    results = await sink.apply([newer, older, newer])

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    assert sink.state["order:o1"][0] == 5
    assert sink.state["order:o1"][1]["status"] == "shipped"
    assert sink.state["order:o1"][1]["item_count"] == 2


async def test_memory_sink_failure_injection() -> None:
    sink = MemorySink()
    sink.fail(Outcome.TRANSIENT, times=1, matching=lambda e: e.aggregate_id == "bad")
    events = [order_event("good", 1), order_event("bad", 1)]

    first = await sink.apply(events)
    second = await sink.apply(events)

    assert [r.outcome for r in first] == [Outcome.DELIVERED, Outcome.TRANSIENT]
    assert [r.outcome for r in second] == [Outcome.DELIVERED, Outcome.DELIVERED]
    sink.down = True
    assert not (await sink.health()).ok
    assert [r.outcome for r in await sink.apply(events)] == [Outcome.TRANSIENT] * 2


async def test_a_projection_error_is_a_permanent_failure() -> None:
    sink = MemorySink()
    broken = order_event("o2", 1)
    broken.payload.pop("items")
    [result] = await sink.apply([broken])
    assert result.outcome is Outcome.PERMANENT
    assert "items" in (result.error or "")


async def test_memory_sink_journal_appends_whole_lines_across_reopening(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    first = MemorySink(journal_path=journal)
    await first.start()
    await first.apply([order_event("o1", 1), order_event("o2", 1)])
    await first.close()
    second = MemorySink(journal_path=journal)
    await second.start()
    await second.apply([order_event("o1", 2, "confirmed")])
    await second.close()

    text = journal.read_text()
    assert text.endswith("\n")
    entries = [json.loads(line) for line in text.splitlines()]
    assert [(e["key"], e["version"]) for e in entries] == [
        ("order:o1", 1),
        ("order:o2", 1),
        ("order:o1", 2),
    ]
