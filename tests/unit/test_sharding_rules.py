"""Sharded mode's small decisions: order ids that name their shard, the saga's settlements,
the shards' settings, the plan, the report's merge, scatter-gather and the skew."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from adapters.memory import MemorySink
from gateway import ConfigError, load_settings
from gateway.errors import ValidationError
from gateway.operations.doctor import healthy
from gateway.operations.health import readiness
from gateway.order_ids import new_order_id, shard_tag, tag_of
from gateway.postgres.database import DatabaseUnavailable
from gateway.postgres.migrations import DatabaseRole, discover_migrations
from gateway.postgres.topology import CATALOG, databases
from gateway.sharding.decisions import Decision
from gateway.sharding.directory import CustomerDirectory
from gateway.sharding.placement import Shard, rendezvous_shard
from gateway.sharding.plan import plan_moves
from gateway.sharding.reconcile import Repair, is_break, repair_of
from gateway.sharding.reservations import ReservationStatus, Settlement
from gateway.sharding.saga import (
    release_at_once,
    released_after_abandoning,
    settlement_of_expired,
)
from gateway.sharding.scatter import scatter
from gateway.sharding.status import skew
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.orders_report import GroupBy, ReportRow, check_period, merge_rows
from support.stores import order_event

CATALOG_URL = "postgresql://app:s3cret@catalog.internal/shop"


def shards_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"postgres:\n  url: {CATALOG_URL}\n  shards:\n{body}")
    return path


# --- order ids ---------------------------------------------------------------------------


def test_an_order_id_carries_its_shards_tag_and_stays_a_version_4_uuid() -> None:
    for name in ("alpha", "beta", "eu-west-1"):
        tag = shard_tag(name)
        ids = {new_order_id(tag) for _ in range(200)}
        assert len(ids) == 200
        assert all(tag_of(order_id) == tag for order_id in ids)
        assert all(order_id.version == 4 for order_id in ids)
        assert all(order_id.variant == uuid.RFC_4122 for order_id in ids)


def test_a_shards_tag_depends_on_its_name_only() -> None:
    assert shard_tag("alpha") == shard_tag("alpha")
    assert shard_tag("alpha") != shard_tag("beta")
    with pytest.raises(ValueError, match="16 bits"):
        new_order_id(1 << 16)


# --- the saga's decisions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "release"),
    [
        (ValidationError.single("billing_address_id", "not the customer's"), True),
        (asyncpg.RaiseError("outbox rejected the event"), True),
        (asyncpg.UniqueViolationError("duplicate key"), True),
        (DatabaseUnavailable("cannot connect"), False),
        (ConnectionResetError("reset by peer"), False),
        (asyncpg.ConnectionDoesNotExistError("closed mid-operation"), False),
        (asyncpg.AdminShutdownError("terminating connection"), False),
        (TimeoutError(), False),
        (asyncio.CancelledError(), False),
    ],
)
def test_a_reservation_is_released_at_once_only_when_the_shard_certainly_wrote_nothing(
    error: BaseException, release: bool
) -> None:
    assert release_at_once(error) is release


@pytest.mark.parametrize(
    ("decision", "status", "settlement"),
    [
        (Decision.ABANDONED, None, Settlement.RELEASE),
        (Decision.CREATED, OrderStatus.PENDING, Settlement.COMMIT),
        (Decision.CREATED, OrderStatus.DELIVERED, Settlement.COMMIT),
        (Decision.CREATED, OrderStatus.CANCELLED, Settlement.RETURN),
        (Decision.CREATED, None, Settlement.RETURN),
    ],
)
def test_an_expired_reservation_is_settled_by_the_decision_that_stands(
    decision: Decision, status: OrderStatus | None, settlement: Settlement
) -> None:
    assert settlement_of_expired(decision, status) is settlement


@pytest.mark.parametrize(
    ("decision", "status", "moved_to", "settlement"),
    [
        # The shard holds the order's tombstone and not the order: it decided nothing.
        (Decision.MOVED, None, "beta", None),
        (Decision.MOVED, None, None, None),
        # A decision left on the source by a move not finished yet, or an 'abandoned' recorded
        # there after the move's last step: the order lives on where its tombstone leads.
        (Decision.CREATED, None, "beta", None),
        (Decision.ABANDONED, None, "beta", None),
        # Moved away and back: the order is here again, and settled here.
        (Decision.CREATED, OrderStatus.PENDING, "beta", Settlement.COMMIT),
        (Decision.CREATED, OrderStatus.CANCELLED, "beta", Settlement.RETURN),
    ],
)
def test_an_expired_reservation_of_an_order_that_moved_away_is_left_held(
    decision: Decision,
    status: OrderStatus | None,
    moved_to: str | None,
    settlement: Settlement | None,
) -> None:
    assert settlement_of_expired(decision, status, moved_to) is settlement


def test_a_writer_releases_what_it_abandoned_only_when_its_decision_stands() -> None:
    assert released_after_abandoning(Decision.ABANDONED)
    assert not released_after_abandoning(Decision.CREATED)
    assert not released_after_abandoning(Decision.MOVED)


def test_settlements_move_between_the_right_statuses() -> None:
    assert Settlement.COMMIT.sources == [ReservationStatus.HELD]
    assert Settlement.RELEASE.sources == [ReservationStatus.HELD]
    assert Settlement.RETURN.sources == [ReservationStatus.HELD, ReservationStatus.COMMITTED]
    assert not Settlement.COMMIT.restores_units
    assert Settlement.RELEASE.restores_units and Settlement.RETURN.restores_units
    assert [s.event_type for s in Settlement] == [None, "inventory.released", "inventory.returned"]


def test_a_store_projects_an_orders_inventory_released_but_not_a_reservations() -> None:
    sink = MemorySink()
    released = order_event(str(uuid.uuid4()), 2, "cancelled")._replace(
        event_type="inventory.released"
    )
    assert sink.projections.project(released) is not None
    assert sink.projections.project(released._replace(aggregate_type="reservation")) is None


# --- settings and databases --------------------------------------------------------------


def test_shards_are_read_with_their_weights_and_make_one_database_each(tmp_path: Path) -> None:
    path = shards_file(
        tmp_path,
        "    alpha:\n      url: postgresql://a@one/shop\n"
        "    beta:\n      url: postgresql://a@two/shop\n      weight: 2\n",
    )
    settings = load_settings(path)
    found = databases(settings.postgres)
    assert [(d.name, d.role) for d in found] == [
        (CATALOG, DatabaseRole.CATALOG),
        ("alpha", DatabaseRole.SHARD),
        ("beta", DatabaseRole.SHARD),
    ]
    assert found[2].postgres.url.get_secret_value() == "postgresql://a@two/shop"
    assert all(not d.postgres.shards for d in found)
    assert settings.postgres.shards["beta"].weight == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"    alpha:\n      url: {CATALOG_URL}\n", "database of its own"),
        ("    catalog:\n      url: postgresql://a@one/shop\n", "may not be called 'catalog'"),
        ("    alpha:\n      url: postgresql://a@one/shop\n      weight: 0\n", "greater than 0"),
        ("    Alpha:\n      url: postgresql://a@one/shop\n", "should match pattern"),
    ],
)
def test_bad_shards_name_the_key_and_the_file(tmp_path: Path, body: str, message: str) -> None:
    path = shards_file(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(path)
    assert raised.value.key.startswith("postgres.shards")
    assert raised.value.source == str(path)
    assert "s3cret" not in str(raised.value)


def test_in_sharded_mode_replicas_are_listed_per_shard_and_the_catalog_has_none(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"postgres:\n  url: {CATALOG_URL}\n  replicas: [postgresql://a@replica/shop]\n"
        "  shards:\n    alpha:\n      url: postgresql://a@one/shop\n"
    )
    with pytest.raises(ConfigError, match=r"each shard's \(postgres.shards.<name>.replicas\)"):
        load_settings(path)


def test_each_shard_reads_from_its_own_replicas(tmp_path: Path) -> None:
    path = shards_file(
        tmp_path,
        "    alpha:\n      url: postgresql://a:pw@one/shop\n"
        "      replicas: [postgresql://a:pw@one-r1/shop, postgresql://a:pw@one-r2/shop]\n"
        "    beta:\n      url: postgresql://a:pw@two/shop\n"
        "      replicas: postgresql://a:pw@two-r1/shop, postgresql://a:pw@two-r2/shop\n"
        "    gamma:\n      url: postgresql://a:pw@three/shop\n",
    )
    found = {
        database.name: [url.get_secret_value() for url in database.postgres.replicas]
        for database in databases(load_settings(path).postgres)
    }
    assert found == {
        CATALOG: [],
        "alpha": ["postgresql://a:pw@one-r1/shop", "postgresql://a:pw@one-r2/shop"],
        "beta": ["postgresql://a:pw@two-r1/shop", "postgresql://a:pw@two-r2/shop"],
        "gamma": [],
    }


def test_each_role_gets_the_common_migrations_and_its_own() -> None:
    single = {m.version for m in discover_migrations()}
    catalog = {m.version: m.name for m in discover_migrations(DatabaseRole.CATALOG)}
    shard = {m.version: m.name for m in discover_migrations(DatabaseRole.SHARD)}
    assert single < set(catalog) and single < set(shard)
    assert "customer_directory_and_reservations" in catalog.values()
    assert "shard_orders" in shard.values()
    assert not (set(catalog) - single) & (set(shard) - single)


# --- plan, report, scatter, skew ---------------------------------------------------------


def test_the_plan_counts_the_customers_placement_would_move() -> None:
    two = [Shard("alpha"), Shard("beta")]
    three = [*two, Shard("gamma")]
    entries = [(uuid.UUID(int=n * 7919 + 1), "") for n in range(3_000)]
    entries = [(cid, rendezvous_shard(str(cid), two)) for cid, _ in entries]

    assert plan_moves(entries, two).moving == 0
    grown = plan_moves(entries, three)
    assert grown.customers == 3_000
    assert {target for _, target in grown.moves} == {"gamma"}
    assert abs(grown.moving / 3_000 - 1 / 3) < 0.04
    shrunk = plan_moves(entries, two[:1])
    assert set(shrunk.moves) == {("beta", "alpha")}


def test_report_rows_of_several_shards_are_added_up_by_group_and_currency() -> None:
    alpha = [
        ReportRow("pending", "USD", 3, Decimal("47.40")),
        ReportRow("pending", "EUR", 1, Decimal("9")),
    ]
    beta = [
        ReportRow("pending", "USD", 2, Decimal("31.60")),
        ReportRow("cancelled", "USD", 1, Decimal("5")),
    ]
    assert merge_rows([alpha, beta]) == [
        ReportRow("cancelled", "USD", 1, Decimal("5")),
        ReportRow("pending", "EUR", 1, Decimal("9")),
        ReportRow("pending", "USD", 5, Decimal("79.00")),
    ]


def test_a_report_period_is_checked_field_by_field() -> None:
    now = datetime.now(UTC)
    assert check_period(now, now + timedelta(days=1), "day") is GroupBy.DAY
    for since, until, group_by, field in [
        (now, now, "status", "until"),
        (now.replace(tzinfo=None), now + timedelta(1), "status", "since"),
        (now, now + timedelta(1), "month", "group_by"),
    ]:
        with pytest.raises(ValidationError) as raised:
            check_period(since, until, group_by)
        assert raised.value.errors[0].field == field


async def test_scatter_names_the_shards_that_do_not_answer() -> None:
    async def answers() -> int:
        return 1

    async def hangs() -> int:
        await asyncio.Event().wait()
        return 2

    async def unreachable() -> int:
        raise ConnectionRefusedError(111, "Connect call failed")

    gathered = await scatter({"a": answers, "b": hangs, "c": unreachable}, 0.05)
    assert gathered.results == {"a": 1}
    assert gathered.partial
    assert gathered.missing["b"] == "no answer within 0.05s"
    assert "ConnectionRefusedError" in gathered.missing["c"]


async def test_scatter_raises_what_is_not_an_outage() -> None:
    async def broken() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await scatter({"a": broken}, 1)


def test_skew_is_the_largest_over_the_mean() -> None:
    assert skew([10, 10]) == 1.0
    assert skew([30, 10]) == 1.5
    assert skew([0, 0]) is None
    assert skew([]) is None


def test_readiness_needs_the_catalog_and_names_a_missing_shard_degraded() -> None:
    assert readiness(True, []) == "ready"
    assert readiness(True, [True, True]) == "ready"
    assert readiness(True, [True, False]) == "degraded"
    assert readiness(False, [True, True]) == "unavailable"
    assert readiness(False, [False]) == "unavailable"


def test_doctor_is_unhealthy_when_a_shard_is_down() -> None:
    report = {"postgres": {"ok": True}, "sinks": [{"ok": True}]}
    assert healthy(report)
    assert healthy({**report, "shards": [{"ok": True}, {"ok": True}]})
    assert not healthy({**report, "shards": [{"ok": True}, {"ok": False}]})


def test_doctor_is_unhealthy_when_a_shard_s_replica_is_not_streaming() -> None:
    report = {"postgres": {"ok": True}, "sinks": [{"ok": True}]}
    streaming = {"ok": True, "replicas": [{"state": "streaming"}]}
    down = {"ok": True, "replicas": [{"state": "streaming"}, {"state": "down"}]}
    assert healthy({**report, "shards": [streaming, {"ok": True, "replicas": []}]})
    assert not healthy({**report, "shards": [streaming, down]})


class CountingCatalog:
    """Answers the directory's lookups from a dict, counting them."""

    def __init__(self, shards: dict[uuid.UUID, str]) -> None:
        self.shards = shards
        self.lookups = 0

    async def fetchval(self, statement: str, customer_id: uuid.UUID) -> str | None:
        self.lookups += 1
        return self.shards.get(customer_id)


async def test_the_directory_remembers_its_cache_size_of_customers_least_recent_out_first() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    catalog = CountingCatalog({a: "alpha", b: "beta", c: "alpha"})
    directory = CustomerDirectory(cast(asyncpg.Pool, catalog), cache_size=2)

    shards = [await directory.shard_of(customer) for customer in (a, b, a, c)]

    assert shards == ["alpha", "beta", "alpha", "alpha"]
    assert catalog.lookups == 3  # a's second lookup was remembered
    assert await directory.shard_of(a) == "alpha" and catalog.lookups == 3
    assert await directory.shard_of(b) == "beta" and catalog.lookups == 4  # b made way for c


@pytest.mark.parametrize(
    ("reservation", "order", "in_stock", "repair"),
    [
        (ReservationStatus.COMMITTED, OrderStatus.PENDING, False, None),
        (ReservationStatus.COMMITTED, OrderStatus.CANCELLED, False, Repair.RETURN),
        (ReservationStatus.COMMITTED, None, False, Repair.RETURN),
        (ReservationStatus.RELEASED, OrderStatus.PENDING, True, Repair.RETAKE),
        (ReservationStatus.RETURNED, OrderStatus.SHIPPED, True, Repair.RETAKE),
        (ReservationStatus.RELEASED, OrderStatus.PENDING, False, Repair.CANCEL),
        (ReservationStatus.RELEASED, OrderStatus.CONFIRMED, False, None),
        (ReservationStatus.RELEASED, OrderStatus.CANCELLED, True, None),
        (ReservationStatus.HELD, OrderStatus.PENDING, True, None),
        (None, OrderStatus.PENDING, True, None),
    ],
)
def test_a_broken_reservation_is_repaired_by_what_the_order_and_the_stock_allow(
    reservation: ReservationStatus | None,
    order: OrderStatus | None,
    in_stock: bool,
    repair: Repair | None,
) -> None:
    assert repair_of(reservation, order, in_stock) is repair


@pytest.mark.parametrize(
    ("reservation", "order", "broken"),
    [
        (ReservationStatus.COMMITTED, OrderStatus.DELIVERED, False),
        (ReservationStatus.COMMITTED, OrderStatus.CANCELLED, True),
        (ReservationStatus.COMMITTED, None, True),
        (ReservationStatus.RELEASED, OrderStatus.PENDING, True),
        (ReservationStatus.RETURNED, OrderStatus.CANCELLED, False),
        (ReservationStatus.RELEASED, None, False),
        (None, OrderStatus.PENDING, True),
        (ReservationStatus.HELD, OrderStatus.PENDING, False),
        (ReservationStatus.HELD, None, False),
    ],
)
def test_a_reservation_and_its_order_disagree_when_units_and_a_live_order_do_not_go_together(
    reservation: ReservationStatus | None, order: OrderStatus | None, broken: bool
) -> None:
    assert is_break(reservation, order) is broken
