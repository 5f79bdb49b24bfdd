"""The cost-per-order benchmark's pure parts: reading /proc, finding servers, attributing CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cost_per_order import (
    CLOCK_TICKS,
    FERRETDB_STORAGE,
    OTHER_DATABASES,
    POSTGRES,
    ProcStat,
    Reading,
    ServerNotFound,
    children_of,
    cost_per_order,
    loopback_only,
    parse_stat,
    postgres_database,
    postgres_role,
    postgres_ticks_by_role,
    readings_between,
    server_pid,
    tree_ticks,
    window_cpu_seconds,
)

# A real line of /proc/<pid>/stat, its command holding a space and a parenthesis.
STAT = (
    "4242 (odd) name) S 17 4242 4242 0 -1 4194304 1000 0 0 0 "
    "150 30 7 5 20 0 4 0 98765 2000000 3000 18446744073709551615 "
    "1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0"
)


def test_a_stat_line_gives_parent_start_and_own_and_reaped_ticks() -> None:
    assert parse_stat(STAT) == ProcStat(parent=17, started=98765, own_ticks=180, reaped_ticks=12)


def test_this_process_stat_parses_with_its_real_parent() -> None:
    import os

    stat = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert stat.parent == os.getppid()


def process(parent: int, own: int, reaped: int = 0) -> ProcStat:
    return ProcStat(parent=parent, started=1, own_ticks=own, reaped_ticks=reaped)


def test_a_tree_counts_every_descendant_and_what_each_reaped() -> None:
    processes = {
        1: process(0, 1000),
        10: process(1, 5, reaped=3),  # the root
        11: process(10, 7),
        12: process(11, 2, reaped=4),
        20: process(1, 100),  # not in the tree
    }
    assert tree_ticks(processes, 10, children_of(processes)) == 5 + 3 + 7 + 2 + 4


@pytest.mark.parametrize(
    ("title", "database"),
    [
        ("postgres: fanout fanout_bench_1 127.0.0.1(4711) idle", "fanout_bench_1"),
        ("postgres: fanout ferretdb 127.0.0.1(4712) INSERT", "ferretdb"),
        ("postgres: fanout postgres [local] idle", "postgres"),
        ("postgres: fanout-ha: fanout postgres [local] idle", "postgres"),
        ("postgres: autovacuum worker fanout_bench_1", "fanout_bench_1"),
        ("postgres: checkpointer ", None),
        ("postgres: background writer ", None),
        ("postgres: walwriter ", None),
        ("postgres: logical replication launcher ", None),
        ("postgres: walsender fanout_replication 127.0.0.1(57406) streaming 8/77C29220", None),
        ("/usr/lib/postgresql/15/bin/postgres -D /data -p 55432", None),
    ],
)
def test_a_postgres_title_names_its_database(title: str, database: str | None) -> None:
    assert postgres_database(title) == database


def test_postgres_processes_are_the_orders_database_ferretdb_or_none_of_the_run() -> None:
    assert postgres_role("postgres: fanout orders_db 127.0.0.1(1) idle", "orders_db") == POSTGRES
    assert postgres_role("postgres: walwriter ", "orders_db") == POSTGRES
    assert postgres_role("postgres: fanout ferretdb 127.0.0.1(2) idle", "orders_db") == (
        FERRETDB_STORAGE
    )
    assert postgres_role("postgres: fanout other 127.0.0.1(3) idle", "orders_db") == (
        OTHER_DATABASES
    )


SERVICES_LAYOUT = {
    "postgres": "postgres/data/postmaster.pid",
    "mongodb": "mongodb/ferretdb.pid",
    "redis": "redis/redis.pid",
    "elasticsearch": "elasticsearch/es.pid",
    "influxdb": "influxdb/influxd.pid",
    "kafka": "kafka/kafka.pid",
}


@pytest.mark.parametrize(("kind", "pid_file"), SERVICES_LAYOUT.items())
def test_each_server_is_found_through_its_pid_file(
    tmp_path: Path, kind: str, pid_file: str
) -> None:
    (tmp_path / pid_file).parent.mkdir(parents=True)
    (tmp_path / pid_file).write_text("4321\n/some/data\n")
    commands = {
        "postgres": "/usr/lib/postgresql/15/bin/postgres -D x",
        "mongodb": "/x/bin/ferretdb-v1.24.0 --handler=postgresql",
        "redis": "redis-server 127.0.0.1:56379",
        "elasticsearch": "java -cp /x/lib/* org.elasticsearch.bootstrap.Elasticsearch",
        "influxdb": "/x/bin/influxd-v1.8.10 -config x",
        "kafka": "java -cp /x/kafka_2.13-4.1.1.jar kafka.Kafka x",
    }
    assert server_pid(kind, tmp_path, lambda pid: commands[kind] if pid == 4321 else "") == 4321


def test_a_pid_file_naming_another_program_is_refused_by_its_server(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "redis.pid").write_text("99\n")
    with pytest.raises(ServerNotFound, match=r"redis: pid 99 .* 'sleep', not redis-server"):
        server_pid("redis", tmp_path, lambda pid: "sleep 100")
    with pytest.raises(ServerNotFound, match=r"redis: pid 99 .* not running"):
        server_pid("redis", tmp_path, lambda pid: "")


def test_a_missing_pid_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ServerNotFound, match=r"kafka\.pid"):
        server_pid("kafka", tmp_path)


def reading(at: float, trees: dict[str, int], postgres: dict[int, tuple[str, int]]) -> Reading:
    return Reading(at, trees, {(pid, 1): entry for pid, entry in postgres.items()})


ORDERS = "postgres: fanout orders_db 127.0.0.1(1) idle"
FERRET = "postgres: fanout ferretdb 127.0.0.1(2) idle"
OTHER = "postgres: fanout someone_else 127.0.0.1(3) idle"


def test_postgres_processes_count_from_the_first_reading_or_their_birth_to_their_last() -> None:
    readings = [
        reading(0.0, {}, {1: ("postgres -D x", 10), 2: (ORDERS, 100), 3: (FERRET, 50)}),
        # 4 is born; 3 ends after this reading (what it spends after it is unseen)
        reading(
            1.0, {}, {1: ("postgres -D x", 11), 2: (ORDERS, 130), 3: (FERRET, 60), 4: (OTHER, 8)}
        ),
        reading(2.0, {}, {1: ("postgres -D x", 12), 2: (ORDERS, 170), 4: (OTHER, 9)}),
    ]
    assert postgres_ticks_by_role(readings, "orders_db") == {
        POSTGRES: 2 + 70,
        FERRETDB_STORAGE: 10,
        OTHER_DATABASES: 9,
    }


def test_the_window_is_each_tree_and_postgres_split_with_what_no_role_holds() -> None:
    readings = [
        reading(0.0, {"relay": 1000, POSTGRES: 5000}, {2: (ORDERS, 100), 3: (FERRET, 50)}),
        reading(
            1.0,
            {"relay": 1000 + 2 * CLOCK_TICKS, POSTGRES: 5000 + 200},
            {2: (ORDERS, 160), 3: (FERRET, 80), 4: (OTHER, 40)},
        ),
    ]
    seconds, not_counted = window_cpu_seconds(readings, ["relay"], "orders_db")
    assert seconds == {
        "relay": 2.0,
        POSTGRES: 60 / CLOCK_TICKS,
        FERRETDB_STORAGE: 30 / CLOCK_TICKS,
    }
    assert not_counted == {
        "postgresql_other_databases": 40 / CLOCK_TICKS,
        "postgresql_ended_between_readings": (200 - 60 - 30 - 40) / CLOCK_TICKS,
    }


def test_the_window_starts_at_the_last_reading_before_the_load_and_ends_at_the_end() -> None:
    readings = [reading(at, {}, {}) for at in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert [r.at for r in readings_between(readings, 0.3, 0.6)] == [0.2, 0.4, 0.6]
    assert [r.at for r in readings_between(readings, -1.0, 0.2)] == [0.0, 0.2]


def test_cost_per_order_gives_milliseconds_shares_and_idle_part_in_the_roles_order() -> None:
    costs = cost_per_order(
        {"load generator": 1.0, "relay": 2.0, POSTGRES: 5.0, "x": 2.0},
        1000,
        idle_cores={"relay": 0.01, POSTGRES: 0.05},
        window_seconds=20.0,
    )
    assert [(c.role, c.cpu_ms_per_order, c.share, c.idle_ms_per_order) for c in costs] == [
        (POSTGRES, 5.0, 0.5, 1.0),
        ("relay", 2.0, 0.2, 0.2),
        ("load generator", 1.0, 0.1, 0.0),
        ("x", 2.0, 0.2, 0.0),
    ]


def test_no_order_placed_is_an_error_naming_the_orders() -> None:
    with pytest.raises(ValueError, match="orders"):
        cost_per_order({"relay": 1.0}, 0)


def test_a_server_off_loopback_is_refused_by_its_name() -> None:
    loopback_only({"redis": "redis://127.0.0.1:6379/0", "kafka": "kafka://localhost:9092"})
    with pytest.raises(ValueError, match=r"not on loopback: elasticsearch$"):
        loopback_only({"redis": "redis://127.0.0.1/0", "elasticsearch": "http://10.0.0.5:9200"})
