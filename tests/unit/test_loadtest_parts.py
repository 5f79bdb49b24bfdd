"""The load test's parts: plan checks, shares, histograms, the wire, faults (no store)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvloop

from gateway import ValidationError
from gateway.configuration.settings import PaymentsSettings, Settings
from gateway.errors import GatewayError
from gateway.loadtest import LoadPlan, check_plan
from gateway.loadtest.driver import LoadDriver, Share
from gateway.loadtest.drivers import DriverProcesses
from gateway.loadtest.faults import ServerFault
from gateway.loadtest.gauges import UNSERVED_GRACE_SECONDS, unserved_sinks
from gateway.loadtest.plan import driver_processes, parse_payment_mix
from gateway.loadtest.runner import generator_cost, seed_namespace
from gateway.loadtest.seed import Buyer, Catalog
from gateway.loadtest.stats import Latencies, Recorder
from gateway.loadtest.targets import Written
from gateway.loadtest.wire import job_of, sample_row, written_of

SETTINGS = Settings.model_validate(
    {
        "postgres": {"url": "postgresql://app:pw@127.0.0.1:5432/orders"},
        "sinks": {"cache": {"type": "redis", "url": "redis://127.0.0.1:6379/0"}},
    }
)


def problems(plan: LoadPlan, settings: Settings = SETTINGS) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        check_plan(plan, settings)
    return {error.field: error.message for error in raised.value.errors}


def test_a_default_plan_is_an_open_loop_of_bounded_length() -> None:
    plan = LoadPlan()
    check_plan(plan, SETTINGS)
    assert plan.open_loop and plan.target_rate == 100 and plan.time_limit == 30


def test_rate_and_concurrency_exclude_each_other() -> None:
    assert "--concurrency" in problems(LoadPlan(rate=10, concurrency=2))


def test_caps_apply_unless_lifted() -> None:
    over = LoadPlan(rate=10_000, duration_seconds=3_600, orders=10**7)
    assert set(problems(over)) == {"--rate", "--duration", "--orders"}
    check_plan(LoadPlan(rate=10_000, duration_seconds=3_600, no_limits=True), SETTINGS)


def test_targets_must_be_local_unless_allowed() -> None:
    remote = Settings.model_validate(
        {
            "postgres": {"url": "postgresql://app:pw@db.example.com/orders"},
            "sinks": {"cache": {"type": "redis", "url": "redis://cache.example.com/0"}},
        }
    )
    found = problems(LoadPlan(via="http", url="http://api.example.com"), remote)
    assert set(found) == {"postgres.url", "--url", "sinks.cache.url"}
    assert "--allow-remote" in found["--url"]
    check_plan(LoadPlan(via="http", url="http://api.example.com", allow_remote=True), remote)


def test_a_fault_needs_a_known_sink_and_a_duration() -> None:
    assert "--fault" in problems(LoadPlan(fault="nope"))
    assert "--fault" in problems(LoadPlan(fault="cache", orders=100))
    assert "--fault-at" in problems(LoadPlan(fault="cache", fault_at=0.8, fault_for=0.5))


def test_http_needs_a_url() -> None:
    assert "--url" in problems(LoadPlan(via="http"))


def test_summaries_are_in_milliseconds() -> None:
    recorder = Recorder()
    for milliseconds in range(1, 101):
        recorder.record(milliseconds / 1000)
    result = recorder.overall.summary()
    assert result["count"] == 100
    assert result["mean"] == pytest.approx(50.5, rel=0.001)
    assert result["p50"] == pytest.approx(50, rel=0.01)
    assert result["p99"] == pytest.approx(99, rel=0.01)
    assert result["max"] == pytest.approx(100, rel=0.01)
    assert recorder.take_interval()["count"] == 100
    assert recorder.take_interval()["count"] == 0


class InstantTarget:
    """Writes nothing: every call returns at once with the order one step further."""

    def __init__(self) -> None:
        self.places = 0
        self.transitions = 0
        self.moved: list[tuple[str, str]] = []
        self.payments: list[tuple[str, str, str]] = []

        self.keys: list[str] = []

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        return request

    async def place(self, request: dict[str, Any], key: str) -> Written:
        self.places += 1
        self.keys.append(key)
        now = datetime.now(UTC)
        return Written(str(uuid.uuid4()), 1, "pending", now, now)

    async def transition(self, order_id: str, status: str, expected_version: int) -> Written:
        self.transitions += 1
        self.moved.append((order_id, status))
        now = datetime.now(UTC)
        return Written(order_id, expected_version + 1, status, now, now)

    async def pay(self, order: Written, status: str, payment_id: str) -> tuple[Written, str]:
        self.payments.append((order.order_id, status, payment_id))
        now = datetime.now(UTC)
        if status == "succeeded":
            return Written(order.order_id, order.version + 2, "confirmed", now, now), "confirmed"
        return Written(order.order_id, order.version + 3, "cancelled", now, now), "cancelled"

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_a_transition_with_no_order_left_to_move_is_counted_as_a_placement() -> None:
    # Open loop schedules many transitions before the first one runs; by then most find no
    # order to move and place one instead, and must be counted as what they did.
    target = InstantTarget()
    catalog = Catalog("unit", [Buyer("c", "b", "s")], ["p"])
    driver = LoadDriver(
        LoadPlan(rate=2000, orders=300, transition_ratio=0.9, no_limits=True),
        target,
        catalog,
    )
    await driver.run()
    assert driver.counts.offered["place"] == target.places == driver.counts.completed["place"]
    assert (
        driver.counts.offered["transition"]
        == target.transitions
        == driver.counts.completed["transition"]
    )
    assert target.places >= 300 and target.transitions > 0
    assert len(set(target.keys)) == target.places  # one idempotency key per placement


def test_the_generator_s_cost_is_its_processes_cpu_per_completed_operation() -> None:
    assert generator_cost(1.0, 0.5, 2, 500) == {
        "processes": 2,
        "driver_cpu_seconds": 1.0,
        "coordinator_cpu_seconds": 0.5,
        "cpu_seconds": 1.5,
        "cpu_ms_per_operation": 3.0,
    }
    assert generator_cost(0.2, 0.0, 1, 0)["cpu_ms_per_operation"] is None


def test_driver_shares_split_the_plan_without_remainder() -> None:
    for total in (0, 1, 7, 32, 2000):
        for count in (1, 2, 3, 5):
            parts = [Share(index, count).split(total) for index in range(count)]
            assert sum(parts) == total and max(parts) - min(parts) <= 1


async def test_drivers_sharing_an_open_loop_offer_the_planned_schedule_together() -> None:
    # Three drivers, each taking every third slot of one schedule, place exactly the
    # planned orders between them, with keys that never collide.
    catalog = Catalog("unit", [Buyer("c", "b", "s")], ["p"])
    plan = LoadPlan(rate=900, orders=90, transition_ratio=0.0, no_limits=True)
    targets = [InstantTarget() for _ in range(3)]
    drivers = [
        LoadDriver(plan, target, catalog, share=Share(index, 3))
        for index, target in enumerate(targets)
    ]
    await asyncio.gather(*(driver.run() for driver in drivers))
    assert [target.places for target in targets] == [30, 30, 30]
    keys = [key for target in targets for key in target.keys]
    assert len(set(keys)) == 90


def test_the_default_number_of_driver_processes_leaves_half_the_cores() -> None:
    assert driver_processes(LoadPlan(), cpus=2) == 1
    assert driver_processes(LoadPlan(), cpus=8) == 4
    assert driver_processes(LoadPlan(processes=6)) == 6
    assert driver_processes(LoadPlan(concurrency=2, processes=6)) == 2


def test_parts_need_a_run_id_and_a_valid_number() -> None:
    found = problems(LoadPlan(part=0))
    assert set(found) == {"--part"}
    assert "--run-id" in problems(LoadPlan(part=2))["--part"]
    assert "--run-id" in problems(LoadPlan(run_id="no spaces"))
    assert "--processes" in problems(LoadPlan(processes=0))
    check_plan(LoadPlan(run_id="nightly-7", part=2), SETTINGS)


def test_parts_of_one_run_seed_rows_of_their_own() -> None:
    assert seed_namespace("r1", None) == "r1"
    assert seed_namespace("r1", 1) != seed_namespace("r1", 2)


def test_a_sampled_write_crosses_the_pipe_unchanged() -> None:
    now = datetime.now(UTC)
    written = Written("o-1", 3, "shipped", now, now)
    assert written_of(json.loads(json.dumps(sample_row(written, 12.5)))) == (written, 12.5)


def test_histograms_merge_exactly() -> None:
    # Percentiles of histograms added together are those of one histogram of all values.
    rng = random.Random(7)
    values = [rng.randint(1, 5_000_000) for _ in range(20_000)]
    whole, halves = Latencies(), [Latencies(), Latencies()]
    for index, value in enumerate(values):
        whole.record(value)
        halves[index % 2].record(value)
    merged = Latencies()
    for half in halves:
        merged.add(json.loads(json.dumps(half.encode())))
    assert merged.summary() == whole.summary()
    assert Latencies().encode()["total_micros"] == 0
    empty = Latencies()
    empty.add(Latencies().encode())
    assert empty.summary()["count"] == 0


def test_a_start_command_that_leaves_a_server_running_returns_on_uvloop() -> None:
    # The started server (here: a sleep in the background) keeps the streams it inherited;
    # the fault must not wait for it, on the coordinator's loop.
    settings = SETTINGS.sinks["cache"]
    fault = ServerFault("cache", settings, "true", "bash -c 'sleep 30 & exit 0'")

    async def start_and_stop() -> None:
        await asyncio.wait_for(fault.start(), 10)
        failing = ServerFault(
            "cache", settings, "bash -c 'echo no such server >&2; exit 3'", "true"
        )
        with pytest.raises(GatewayError, match=r"failed \(3\): no such server"):
            await asyncio.wait_for(failing.stop(), 10)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(start_and_stop())


async def test_a_driver_process_that_ends_before_it_is_ready_ends_the_run_with_its_error(
    tmp_path: Path,
) -> None:
    # One driver cannot read its configuration; the other is ready and waits for the start,
    # which must not keep the run waiting.
    broken, sound = tmp_path / "broken.yaml", tmp_path / "sound.yaml"
    broken.write_text("postgres: [this is not a mapping\n")
    sound.write_text("postgres: {url: 'postgresql://u:p@127.0.0.1:9/x'}\n")
    catalog = Catalog("unit", [Buyer("c", "b", "s")], ["p"])
    plan = LoadPlan(via="http", url="http://127.0.0.1:9")
    jobs = [
        job_of("outbox", plan, catalog, str(path), i, 2) for i, path in enumerate((broken, sound))
    ]
    drivers = DriverProcesses(jobs, None)
    with pytest.raises(GatewayError, match=r"ended .* before it finished: (?s:.*)broken\.yaml"):
        await asyncio.wait_for(drivers.run(), 30)
    assert not drivers.started.is_set()


async def test_with_payments_driven_orders_are_paid_failed_or_left_by_their_shares() -> None:
    catalog = Catalog("unit", [Buyer("c", "b", "s")], ["p"])
    plan = LoadPlan(
        concurrency=4,
        orders=2_000,
        transition_ratio=0.5,
        paid_share=0.5,
        failed_share=0.3,
        unpaid_share=0.2,
        no_limits=True,
    )
    target = InstantTarget()
    driver = LoadDriver(plan, target, catalog)

    await driver.run()

    lives = driver.counts.lives
    assert sum(lives.values()) == target.places
    assert lives["paid"] == pytest.approx(0.5 * target.places, rel=0.1)
    assert lives["failed"] == pytest.approx(0.3 * target.places, rel=0.15)
    assert lives["unpaid"] == pytest.approx(0.2 * target.places, rel=0.2)
    assert len(target.payments) == lives["paid"] + lives["failed"] == driver.counts.completed["pay"]
    assert dict(driver.counts.payment_outcomes) == {
        "confirmed": lives["paid"],
        "cancelled": lives["failed"],
    }
    assert len({payment_id for _, _, payment_id in target.payments}) == len(target.payments)
    # Pending orders wait for their payment: no caller confirms them; paid ones move on.
    paid = {order for order, status, _ in target.payments if status == "succeeded"}
    assert target.moved and all(status != "confirmed" for _, status in target.moved)
    assert {order for order, _ in target.moved} <= paid


def test_the_payment_mix_is_parsed_and_checked() -> None:
    assert parse_payment_mix("paid=0.7,failed=0.2,unpaid=0.1") == (0.7, 0.2, 0.1)
    assert parse_payment_mix("paid=1") == (1.0, 0.0, 0.0)
    for text in ("paid=0.5,lost=0.5", "paid=lots"):
        with pytest.raises(ValidationError) as raised:
            parse_payment_mix(text)
        assert raised.value.field == "--payments"
    assert "add up to 1" in problems(LoadPlan(paid_share=0.5, failed_share=0.2))["--payments"]
    assert "dual write" in problems(LoadPlan(paid_share=1, compare="dual-write"))["--payments"]
    http = LoadPlan(via="http", url="http://127.0.0.1:8000", paid_share=1)
    assert "webhook_secret" in problems(http)["--payments"]
    signed = SETTINGS.model_copy(
        update={"payments": PaymentsSettings(webhook_secret=["a-secret-of-20-chars"])}
    )
    check_plan(http, signed)


def test_a_sink_is_unserved_once_no_relay_has_held_it_for_the_grace_period() -> None:
    began = 100.0
    last_served = {"memory": began, "redis": began + 4.0}
    assert unserved_sinks(last_served, began + UNSERVED_GRACE_SECONDS - 0.1) == []
    assert unserved_sinks(last_served, began + UNSERVED_GRACE_SECONDS) == ["memory"]
    assert unserved_sinks(last_served, began + 4.0 + UNSERVED_GRACE_SECONDS) == [
        "memory",
        "redis",
    ]
