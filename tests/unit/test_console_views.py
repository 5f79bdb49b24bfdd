"""The console's decisions: which stores are behind, what a lookup names, delivery rates and
the lag history, the chart's geometry, which sinks the page lists."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from adapters.readback import ProjectedOrder, RecordPlace
from gateway.api.console.chart import line_chart
from gateway.api.console.lag import LagHistory, Sample, SinkSample, combine, delivery_rate
from gateway.api.console.order_view import (
    LoggedRecord,
    OrderLookupError,
    Standing,
    StoreCopy,
    log_copy,
    logged_standing,
    parse_lookup,
    parse_order_id,
    standing,
)
from gateway.api.console.sinks import sink_names
from gateway.history.store import OrderEvent
from gateway.postgres.outbox import Backlog
from gateway.relay.tables import SinkTotals

POSTGRES = ProjectedOrder(3, "shipped", "39.80")


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        (None, Standing.MISSING),
        (ProjectedOrder(2, "processing", "39.80"), Standing.BEHIND),
        (ProjectedOrder(3, "shipped", "39.80"), Standing.IN_STEP),
        (ProjectedOrder(3, "shipped", "40.00"), Standing.DIFFERENT),
        (ProjectedOrder(4, "delivered", "39.80"), Standing.DIFFERENT),
    ],
)
def test_a_stores_copy_is_missing_behind_different_or_in_step(
    held: ProjectedOrder | None, expected: Standing
) -> None:
    assert standing(POSTGRES, held) is expected


def test_a_log_is_in_step_when_it_holds_the_latest_events_record() -> None:
    place = RecordPlace("shop.order", 2, 41)
    logged = StoreCopy("kafka", logged_standing(place), record=LoggedRecord(3, place))

    assert logged.standing is Standing.IN_STEP and logged.version == 3
    assert logged_standing(None) is Standing.MISSING
    assert StoreCopy("kafka", logged_standing(None)).version is None
    assert StoreCopy("mongodb", Standing.IN_STEP, POSTGRES).version == 3


def test_the_page_highlights_every_copy_that_is_not_in_step_or_not_read() -> None:
    highlighted = {s for s in Standing if StoreCopy("sink", s).lagging}

    assert highlighted == {
        Standing.MISSING,
        Standing.BEHIND,
        Standing.DIFFERENT,
        Standing.UNREADABLE,
    }


def test_a_lookup_is_an_order_id_or_an_order_number() -> None:
    order_id = uuid.uuid4()

    assert parse_lookup(f"  {order_id} ").order_id == order_id
    assert parse_lookup("ORD-20260101-00000042").order_number == "ORD-20260101-00000042"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "type an order id (a UUID) or an order number"),
        ("<script>", "is neither an order id (a UUID) nor an order number"),
        ("a b", "is neither an order id"),
        ("x" * 65, "is neither an order id"),
    ],
)
def test_a_lookup_that_names_no_order_says_why(text: str, message: str) -> None:
    with pytest.raises(OrderLookupError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_lookup(text)


def test_an_order_page_address_must_hold_a_uuid() -> None:
    with pytest.raises(OrderLookupError, match=r"'ORD-1' is not an order id \(a UUID\)"):
        parse_order_id("ORD-1")


def totals(sink: str, delivered: int, dead: int = 0, error: str | None = None) -> SinkTotals:
    return SinkTotals(sink, delivered, 0, dead, 1, error, True, 0.0)


def test_a_sample_adds_up_every_databases_outbox() -> None:
    sample = combine(
        10.0,
        [
            ([Backlog("kafka", 5, 2.5)], [totals("kafka", 100), totals("redis", 7)]),
            ([Backlog("kafka", 1, 9.0)], [totals("kafka", 50, dead=2, error="boom")]),
        ],
    )

    assert sample.sinks == {
        "kafka": SinkSample(6, 9.0, 150, 2, "boom"),
        "redis": SinkSample(0, None, 7, 0, None),
    }


def at(seconds: float, delivered: int, sink: str = "redis") -> Sample:
    return Sample(seconds, {sink: SinkSample(0, None, delivered, 0)})


def test_the_delivery_rate_is_taken_over_the_last_minute_of_samples() -> None:
    samples = [at(0, 0), at(30, 6_000), at(60, 6_300), at(90, 6_600)]

    assert delivery_rate(samples, "redis") == pytest.approx(600 / 60)
    assert delivery_rate(samples[:2], "redis") == pytest.approx(200)


def test_no_rate_without_two_samples_or_when_the_counter_went_back() -> None:
    assert delivery_rate([at(0, 10)], "redis") is None
    assert delivery_rate([at(0, 10), at(5, 20)], "kafka") is None
    assert delivery_rate([at(0, 500), at(5, 20)], "redis") is None  # retired, registered again


def test_the_history_keeps_one_hour_at_most() -> None:
    history = LagHistory(span_seconds=60, interval_seconds=5)
    for second in range(0, 200, 5):
        history.add(at(second, second))

    kept = history.samples()
    assert len(kept) == 13
    assert (kept[0].at, kept[-1].at) == (135, 195)
    assert history.latest() == kept[-1]


def test_a_chart_places_time_along_x_and_the_peak_at_the_top() -> None:
    chart = line_chart([(0, 0.0), (1_800, 50.0), (3_600, 100.0)], end=3_600, span=3_600)

    assert chart.count == 3 and chart.peak == 100.0
    assert chart.points == f"0.0,{chart.height:.1f} 300.0,60.0 600.0,0.0"


def test_a_chart_leaves_out_samples_older_than_its_span_and_draws_zeros_at_the_bottom() -> None:
    chart = line_chart([(-10, 7.0), (100, 0.0), (200, 0.0)], end=3_600, span=3_600, height=100)

    assert chart.count == 2 and chart.peak == 1.0
    assert [p.split(",")[1] for p in chart.points.split()] == ["100.0", "100.0"]


def test_the_sinks_page_lists_configured_sinks_then_those_only_the_outbox_knows() -> None:
    assert sink_names(["redis", "mongodb"], ["zeta", "mongodb", "alpha"]) == [
        "redis",
        "mongodb",
        "alpha",
        "zeta",
    ]


class FakeLog:
    """A log that publishes orders to ``topic`` (None: nowhere) and finds records as told."""

    def __init__(self, topic: str | None, found: RecordPlace | None, hang: bool = False) -> None:
        self.topic, self.found, self.hang = topic, found, hang

    def topic_for(self, aggregate_type: str) -> str | None:
        return self.topic

    async def find_record(
        self,
        aggregate_type: str,
        event_id: str,
        occurred_at: datetime,
        *,
        timeout_seconds: float | None = None,
    ) -> RecordPlace | None:
        if self.hang:
            await asyncio.Event().wait()
        return self.found


def latest_event() -> OrderEvent:
    return OrderEvent(
        stream_id=uuid.uuid4(),
        version=4,
        event_id=uuid.uuid4(),
        event_type="order.shipped",
        payload={},
        headers={},
        occurred_at=datetime.now(UTC),
    )


async def test_a_log_copy_says_where_the_record_is_or_why_it_says_nothing() -> None:
    place = RecordPlace("shop.order", 1, 7)

    found = await log_copy("kafka", FakeLog("shop.order", place), latest_event(), 1.0)
    absent = await log_copy("kafka", FakeLog("shop.order", None), latest_event(), 1.0)
    unpublished = await log_copy("kafka", FakeLog(None, place), latest_event(), 1.0)
    forgotten = await log_copy("kafka", FakeLog("shop.order", place), None, 1.0)
    stuck = await log_copy("kafka", FakeLog("shop.order", place, hang=True), latest_event(), 0.05)

    assert (found.standing, found.version) == (Standing.IN_STEP, 4)
    assert found.detail == "shop.order · partition 1 · offset 7"
    assert absent.standing is Standing.MISSING and "no record of version 4" in (absent.detail or "")
    assert unpublished.standing is Standing.NOT_READ_BACK
    assert unpublished.detail == "orders are not published"
    assert forgotten.standing is Standing.NOT_READ_BACK
    assert stuck.standing is Standing.UNREADABLE and stuck.detail == "no answer within 0.05 s"
