"""Debezium (Kafka Connect standalone, PostgreSQL connector, Outbox Event Router) vs `fanout relay`
(the Kafka sink only), on one PostgreSQL and one Kafka broker. Run by compare.sh from the project
checkout (cwd), with the checkout's .venv; see compare.sh for the set-up.

Phases, each relay alone (the other stopped):
  drain   N order.placed events written to the outbox with both relays stopped (the SQL of
          bench.common.synthesize_order_events, 1,000 per transaction, a real order's payload),
          then one relay started and timed until the end offsets of its topic have grown by N.
          Order: fanout relay, then Debezium (whose replication slot was created beforehand, so
          it streams the same N rows from the WAL). Debezium then runs one steady phase at the
          first rate with its defaults. --events 0 skips all this.
  steady  each rate's orders/s offered open loop for SECONDS through Gateway.place_order (the
          writer processes of bench.relay), one relay running: Debezium with poll.interval.ms
          at --dbz-poll-ms, the fanout relay with its defaults, and each --fanout-variant. Each
          relay is started, catches up with what was written while it was stopped, is warmed
          with 1,000 events, then runs the rates; --repeats times, the order of relays and of
          rates reversed every other time. Latency per event: the Kafka record's LogAppendTime
          (topics are created with message.timestamp.type=LogAppendTime) minus the outbox row's
          commit time (pg_xact_commit_timestamp(xmin); services.sh runs PostgreSQL with
          track_commit_timestamp=on). The summary gives, per rate and relay, the median over
          runs of p50 and p99, the spread of p99 (highest/lowest run) and each fanout relay's
          p99 over Debezium's.
CPU: utime+stime(+children reaped) from /proc/<pid>/stat of the relay process (the Connect JVM,
the `fanout relay` Python process), of its PostgreSQL backends (the walsender of Debezium's
slot; the relay's connections, application_name fanout_relay_cmp), of all of PostgreSQL and of
the Kafka broker, over each phase's window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())

import asyncpg
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.relay import _writer_process
from bench.write_path import seed
from gateway import Gateway, MigrationRunner, Settings
from gateway.configuration.settings import PostgresSettings

CLK = os.sysconf("SC_CLK_TCK")
DATABASE = "dbz_compare"
SLOT = "dbz_compare_outbox"
CONNECTOR = "outbox-dbz"
PARTITIONS = 6  # the Kafka sink's default, used for both relays' topics
FANOUT_TOPIC = "fanout.order"  # the Kafka sink's default prefix + aggregate type
DBZ_TOPIC = "dbz.order"  # the EventRouter's route.topic.replacement dbz.${routedByValue}
RELAY_APP = "fanout_relay_cmp"
FANOUT = "fanout"  # the relay with the sink's and relay's defaults
PER_TRANSACTION = 1_000
WARMUP_EVENTS = 1_000

CHILDREN: list[subprocess.Popen[bytes]] = []


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- /proc -------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def cpu_of(pid: int | None) -> float:
    """CPU seconds of the process, and of its children it has reaped."""
    fields = _stat(pid) if pid else None
    if fields is None:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / CLK


def children_of(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == ppid:
                found.append(int(entry.name))
    return found


def tree_cpu(root: int) -> float:
    return cpu_of(root) + sum(cpu_of(child) for child in children_of(root))


def rss_mb(pid: int | None) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (FileNotFoundError, ProcessLookupError, TypeError):
        pass
    return None


def put_request(request: urllib.request.Request) -> None:
    """Send a request to Connect's REST API, waiting at most 30 s for its answer."""
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


# --- the run -------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.admin_url = f"postgresql://fanout:fanout@127.0.0.1:{args.pg_port}/postgres"
        self.url = f"postgresql://fanout:fanout@127.0.0.1:{args.pg_port}/{DATABASE}"
        self.bootstrap = f"127.0.0.1:{args.kafka_port}"
        self.pool: asyncpg.Pool | None = None
        self.template: str | None = None
        self.postmaster = 0
        self.kafka_pid = int(Path(args.kafka_pidfile).read_text().split()[0])
        self.consumer: AIOKafkaConsumer | None = None
        self.stopped_at: dict[str, int] = {}  # the outbox's last id when each relay stopped

    # PostgreSQL ----------------------------------------------------------------------------

    async def reset_database(self) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            backend = await admin.fetchval("SELECT pg_backend_pid()")
            self.postmaster = int(_stat(backend)[1])  # type: ignore[index]
            if await admin.fetchval("SHOW wal_level") != "logical":
                raise SystemExit("wal_level is not logical (compare.sh sets it)")
            if await admin.fetchval("SHOW track_commit_timestamp") != "on":
                raise SystemExit("track_commit_timestamp is off (services.sh turns it on)")
            if await admin.fetchval(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", SLOT
            ):
                raise SystemExit(f"slot {SLOT} is in use: is another Connect still running?")
            await admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = $1",
                SLOT,
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await admin.close()
        connection = await asyncpg.connect(self.url)
        try:
            await MigrationRunner(connection).apply()
        finally:
            await connection.close()
        settings = Settings(
            postgres=PostgresSettings(url=self.url, pool_min_size=2, pool_max_size=8)
        )
        async with await Gateway.connect(settings) as gateway:
            requests = await seed(gateway, customers=64, products=500)  # as bench.relay does
            await gateway.place_order(requests[0])
        self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)
        self.template = await self.pool.fetchval(
            "SELECT payload::text FROM outbox WHERE event_type = 'order.placed' LIMIT 1"
        )

    async def fill_outbox(self, count: int, prefix: str = "") -> None:
        """``count`` order.placed events of distinct orders, a real order's payload each (the
        statement of bench.common.synthesize_order_events), PER_TRANSACTION per commit."""
        assert self.pool is not None
        for start in range(0, count, PER_TRANSACTION):
            await self.pool.execute(
                "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, version, event_type,"
                " payload) SELECT gen_random_uuid(), 'order', id, 1, 'order.placed',"
                " jsonb_set($1::jsonb, '{id}', to_jsonb(id))"
                " FROM (SELECT $3 || gen_random_uuid()::text AS id"
                " FROM generate_series(1, $2)) AS o",
                self.template,
                min(PER_TRANSACTION, count - start),
                prefix,
            )

    async def truncate(self) -> None:
        """An empty outbox and no relay state: a fanout relay started next delivers exactly
        what is written after this (Debezium skips the TRUNCATE: skipped.operations=t)."""
        assert self.pool is not None
        await self.pool.execute("TRUNCATE outbox, relay_positions, relay_instances, dead_letters")

    async def wal_lsn(self) -> str:
        assert self.pool is not None
        return str(await self.pool.fetchval("SELECT pg_current_wal_lsn()::text"))

    async def wal_bytes(self, since: str) -> int:
        assert self.pool is not None
        return int(
            await self.pool.fetchval(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", since
            )
        )

    async def slot_state(self) -> dict[str, Any]:
        assert self.pool is not None
        row = await self.pool.fetchrow(
            "SELECT active, active_pid, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)"
            " AS retained FROM pg_replication_slots WHERE slot_name = $1",
            SLOT,
        )
        if row is None:
            return {"exists": False}
        return {
            "exists": True,
            "active": row["active"],
            "active_pid": row["active_pid"],
            "retained_wal_bytes": int(row["retained"]),
        }

    async def backend_cpu(self, which: str) -> dict[int, float]:
        """CPU of the relay's own PostgreSQL backends, by pid."""
        assert self.pool is not None
        if which == "debezium":
            pids = await self.pool.fetch(
                "SELECT active_pid AS pid FROM pg_replication_slots"
                " WHERE slot_name = $1 AND active_pid IS NOT NULL",
                SLOT,
            )
        else:
            pids = await self.pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1", RELAY_APP
            )
        return {r["pid"]: cpu_of(r["pid"]) for r in pids}

    # Kafka -----------------------------------------------------------------------------------

    async def reset_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            doomed = [t for t in (FANOUT_TOPIC, DBZ_TOPIC) if t in existing]
            if doomed:
                await admin.delete_topics(doomed)
            for _ in range(100):
                response = await admin.create_topics(
                    [
                        NewTopic(
                            t,
                            PARTITIONS,
                            1,
                            topic_configs={"message.timestamp.type": "LogAppendTime"},
                        )
                        for t in (FANOUT_TOPIC, DBZ_TOPIC)
                    ]
                )
                codes = [e[1] for e in response.topic_errors]
                if all(code == 0 for code in codes):
                    break
                if any(code not in (0, 36) for code in codes):  # 36: exists (deletion pending)
                    raise RuntimeError(f"topic creation failed: {response.topic_errors}")
                await asyncio.sleep(0.2)
                existing = set(await admin.list_topics())
                doomed = [t for t in (FANOUT_TOPIC, DBZ_TOPIC) if t in existing]
                if doomed:
                    with contextlib.suppress(Exception):  # still being deleted
                        await admin.delete_topics(doomed)
            else:
                raise RuntimeError("could not recreate the topics")
        finally:
            await admin.close()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self.consumer.start()

    def partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in range(PARTITIONS)]

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        assert self.consumer is not None
        return dict(await self.consumer.end_offsets(self.partitions(topic)))

    async def grown(self, topic: str, base: dict[TopicPartition, int]) -> int:
        ends = await self.end_offsets(topic)
        return sum(ends[tp] - base[tp] for tp in ends)

    async def records(self, topic: str, base: dict[TopicPartition, int]) -> list[dict[str, Any]]:
        """Every record of ``topic`` past ``base``, in offset order per partition."""
        ends = await self.end_offsets(topic)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_poll_records=5000,
            fetch_max_bytes=52428800,
        )
        await reader.start()
        found: list[dict[str, Any]] = []
        try:
            tps = [tp for tp in ends if ends[tp] > base[tp]]
            if not tps:
                return found
            reader.assign(tps)
            for tp in tps:
                reader.seek(tp, base[tp])
            left = set(tps)
            while left:
                batches = await reader.getmany(timeout_ms=1000)
                for tp, messages in batches.items():
                    for m in messages:
                        if m.offset >= ends[tp]:
                            continue
                        headers = dict(m.headers)
                        found.append(
                            {
                                "partition": tp.partition,
                                "offset": m.offset,
                                "key": m.key.decode() if m.key else None,
                                "event_id": (
                                    headers.get("event_id") or headers.get("id") or b""
                                ).decode(),
                                "version": int(headers.get("version", b"0")),
                                "append_ms": m.timestamp,
                                "timestamp_type": m.timestamp_type,
                                "bytes": len(m.value or b"")
                                + len(m.key or b"")
                                + sum(len(k) + len(v) for k, v in m.headers),
                            }
                        )
                for tp in list(left):
                    if await reader.position(tp) >= ends[tp]:
                        left.discard(tp)
        finally:
            await reader.stop()
        return found

    # processes -------------------------------------------------------------------------------

    def spawn(self, which: str, variant: str = FANOUT) -> subprocess.Popen[bytes]:
        log_path = self.work / f"{which}.log"
        if which == "debezium":
            command = [
                self.args.java,
                *self.args.heap.split(),
                # what Kafka's connect-standalone.sh adds (KAFKA_JVM_PERFORMANCE_OPTS)
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.work / 'log4j2.properties'}",
                "-cp",
                f"{self.args.lib}/*",
                "org.apache.kafka.connect.cli.ConnectStandalone",
                str(self.work / "worker.properties"),
                str(self.work / "connector.properties"),
            ]
        else:
            command = [
                str(Path(".venv/bin/fanout").resolve()),
                "--config",
                str(self.work / f"{variant}.yaml"),
                "relay",
            ]
        with open(log_path, "ab") as out:
            out.write(
                f"\n--- {variant if which == FANOUT else which} started "
                f"{datetime.now(UTC).isoformat()}\n".encode()
            )
            out.flush()
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        CHILDREN.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"pid {process.pid} did not stop in {timeout} s: SIGKILL")
                process.kill()
                process.wait()
        if process in CHILDREN:
            CHILDREN.remove(process)

    def connector_state(self) -> str | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.args.connect_port}/connectors/{CONNECTOR}/status",
                timeout=1,
            ) as response:
                status = json.load(response)
        except Exception:
            return None
        tasks = status.get("tasks") or []
        if (
            any(t.get("state") == "FAILED" for t in tasks)
            or status["connector"]["state"] == "FAILED"
        ):
            raise RuntimeError(f"Debezium failed: {json.dumps(status)[:2000]}")
        return tasks[0]["state"] if tasks else None

    def check_alive(self, process: subprocess.Popen[bytes], which: str) -> None:
        if process.poll() is not None:
            tail = (self.work / f"{which}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{which} exited with {process.returncode}:\n{tail}")

    async def wait_grown(
        self,
        process: subprocess.Popen[bytes],
        which: str,
        topic: str,
        base: dict[TopicPartition, int],
        count: int,
        limit_seconds: float,
        started: float,
        on_first: Any = None,
    ) -> dict[str, Any]:
        """Poll the topic's end offsets every 50 ms until they have grown by ``count``."""
        first = None
        last_status = 0.0
        while True:
            grown = await self.grown(topic, base)
            now = time.perf_counter()
            if grown > 0 and first is None:
                first = now
                if on_first is not None:
                    await on_first()
            if grown >= count:
                return {"first": first, "done": now, "grown": grown}
            self.check_alive(process, which)
            if which == "debezium" and now - last_status > 1:
                last_status = now
                self.connector_state()
            if now - started > limit_seconds:
                raise RuntimeError(
                    f"{which}: {grown} of {count} in Kafka after {limit_seconds:.0f} s"
                )
            await asyncio.sleep(0.05)

    # snapshots -------------------------------------------------------------------------------

    async def snapshot(self, process: subprocess.Popen[bytes] | None, which: str) -> dict[str, Any]:
        return {
            "t": time.perf_counter(),
            "relay": cpu_of(process.pid) if process else 0.0,
            "backends": await self.backend_cpu(which),
            "postgres": tree_cpu(self.postmaster),
            "kafka": cpu_of(self.kafka_pid),
        }

    @staticmethod
    def cpu_between(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        backends = sum(cpu - a["backends"].get(pid, 0.0) for pid, cpu in b["backends"].items())
        return {
            "relay_process_cpu_s": round(b["relay"] - a["relay"], 2),
            "relay_pg_backends_cpu_s": round(backends, 2),
            "postgres_total_cpu_s": round(b["postgres"] - a["postgres"], 2),
            "kafka_broker_cpu_s": round(b["kafka"] - a["kafka"], 2),
        }

    # checks ----------------------------------------------------------------------------------

    @staticmethod
    def delivery_check(records: list[dict[str, Any]], expected: set[str]) -> dict[str, Any]:
        seen: dict[str, int] = {}
        for r in records:
            seen[r["event_id"]] = seen.get(r["event_id"], 0) + 1
        # per key, versions in offset order (only the partition's order is defined)
        highest: dict[str, int] = {}
        out_of_order = 0
        first_seen: set[str] = set()
        for r in sorted(records, key=lambda r: (r["partition"], r["offset"])):
            if r["event_id"] in first_seen:
                continue
            first_seen.add(r["event_id"])
            if r["version"] < highest.get(r["key"], 0):
                out_of_order += 1
            highest[r["key"]] = max(highest.get(r["key"], 0), r["version"])
        return {
            "records": len(records),
            "distinct_events": len(seen),
            "duplicates": len(records) - len(seen),
            "missing": len(expected - set(seen)),
            "unexpected": len(set(seen) - expected),
            "out_of_order": out_of_order,
            "log_append_time": all(r["timestamp_type"] == 1 for r in records),
            "mean_record_bytes": round(sum(r["bytes"] for r in records) / max(1, len(records))),
        }

    # set-up ----------------------------------------------------------------------------------

    def write_configs(self) -> None:
        a = self.args
        (self.work / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.console.type = Console\nappender.console.name = STDOUT\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = WARN\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
            "logger.debezium.name = io.debezium\nlogger.debezium.level = INFO\n"
        )
        (self.work / "worker.properties").write_text(
            f"bootstrap.servers={self.bootstrap}\n"
            f"listeners=http://127.0.0.1:{a.connect_port}\n"
            # every jar on the class path has ServiceLoader manifests: skip the reflective scan
            "plugin.discovery=service_load\n"
            "key.converter=org.apache.kafka.connect.storage.StringConverter\n"
            "value.converter=org.apache.kafka.connect.storage.StringConverter\n"
            f"offset.storage.file.filename={self.work / 'connect.offsets'}\n"
            "offset.flush.interval.ms=5000\n"
            # as the fanout Kafka sink's producer: lz4, 5 ms linger (Connect already sets
            # acks=all; the client's default enables idempotence)
            "producer.compression.type=lz4\n"
            "producer.linger.ms=5\n"
        )
        (self.work / "connector.properties").write_text(
            f"name={CONNECTOR}\n"
            "connector.class=io.debezium.connector.postgresql.PostgresConnector\n"
            "tasks.max=1\n"
            "plugin.name=pgoutput\n"
            "database.hostname=127.0.0.1\n"
            f"database.port={a.pg_port}\n"
            "database.user=fanout\ndatabase.password=fanout\n"
            f"database.dbname={DATABASE}\n"
            "topic.prefix=dbz_compare\n"
            f"slot.name={SLOT}\n"
            f"publication.name={SLOT}\n"
            "publication.autocreate.mode=filtered\n"
            "table.include.list=public.outbox\n"
            # txid (xid8) has no Debezium type; partition is a generated column
            "column.exclude.list=public.outbox.txid,public.outbox.partition\n"
            "snapshot.mode=no_data\n"
            "tombstones.on.delete=false\n"
            "transforms=outbox\n"
            "transforms.outbox.type=io.debezium.transforms.outbox.EventRouter\n"
            "transforms.outbox.table.field.event.id=event_id\n"
            "transforms.outbox.table.field.event.key=aggregate_id\n"
            "transforms.outbox.table.field.event.type=event_type\n"
            "transforms.outbox.table.field.event.payload=payload\n"
            "transforms.outbox.route.by.field=aggregate_type\n"
            "transforms.outbox.route.topic.replacement=dbz.${routedByValue}\n"
            "transforms.outbox.table.fields.additional.placement="
            "event_type:header:event_type,aggregate_type:header:aggregate_type,"
            "version:header:version,occurred_at:header:occurred_at\n"
        )
        base = self.relay_settings()
        for name, overrides in [(FANOUT, {}), *self.args.fanout_variant]:
            (self.work / f"{name}.yaml").write_text(
                "# fanout relay with the Kafka sink only (defaults: topic prefix fanout., lz4,\n"
                "# 5 ms linger, idempotent, acks=all; relay batch_size 500)\n"
                + yaml.safe_dump(with_overrides(base, overrides), sort_keys=False)
            )
        for old in ("connect.offsets", "debezium.log", "fanout.log"):
            (self.work / old).unlink(missing_ok=True)

    def relay_settings(self) -> dict[str, Any]:
        return {
            "postgres": {"url": f"{self.url}?application_name={RELAY_APP}"},
            "orders": {"payment_timeout_seconds": None},
            "sinks": {
                "kafka": {
                    "type": "kafka",
                    "url": f"kafka://{self.bootstrap}",
                    "partitions": PARTITIONS,
                }
            },
            "logging": {"level": "WARNING"},
        }

    def tune_connector(self, poll_ms: int) -> None:
        """Debezium's poll.interval.ms in its properties file (standalone Connect reads the
        file at each start; a change through the REST API lasts only until a restart)."""
        path = self.work / "connector.properties"
        lines = [
            line
            for line in path.read_text().splitlines()
            if not line.startswith("poll.interval.ms=")
        ]
        path.write_text("\n".join([*lines, f"poll.interval.ms={poll_ms}"]) + "\n")

    async def create_slot(self) -> None:
        """Start Debezium once: it creates the slot and the publication (snapshot.mode=no_data)
        and stores an offset; then stop it, so that it streams what is written from here on."""
        process = self.spawn("debezium")
        started = time.perf_counter()
        while self.connector_state() != "RUNNING" or not (await self.slot_state()).get("active"):
            self.check_alive(process, "debezium")
            if time.perf_counter() - started > 180:
                raise RuntimeError("Debezium did not start in 180 s")
            await asyncio.sleep(0.5)
        base = await self.end_offsets(DBZ_TOPIC)
        await self.fill_outbox(1, prefix="setup-")
        await self.wait_grown(process, "debezium", DBZ_TOPIC, base, 1, 120, time.perf_counter())
        await asyncio.sleep(1)
        self.stop(process)
        offsets = self.work / "connect.offsets"
        if not offsets.exists() or offsets.stat().st_size == 0:
            raise RuntimeError("Connect stored no offset: a restart would skip events")
        log(f"Debezium created slot {SLOT} and stopped ({time.perf_counter() - started:.1f} s)")

    # phases ----------------------------------------------------------------------------------

    async def drain(self, which: str, count: int) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
        topic = DBZ_TOPIC if which == "debezium" else FANOUT_TOPIC
        base = await self.end_offsets(topic)
        expected = {
            r["event_id"]
            for r in await self.pool.fetch(  # type: ignore[union-attr]
                "SELECT event_id::text FROM outbox"
            )
        }
        load_before = loadavg()
        wal_before = await self.slot_state()
        process = self.spawn(which)
        started = time.perf_counter()
        s0 = await self.snapshot(process, which)
        s0["t"] = started
        marks: dict[str, Any] = {}

        async def on_first() -> None:
            marks["first"] = await self.snapshot(process, which)

        timing = await self.wait_grown(
            process, which, topic, base, count, max(180.0, count / 200), started, on_first
        )
        s1 = await self.snapshot(process, which)
        records = await self.records(topic, base)
        check = self.delivery_check(records, expected)
        appends = sorted(r["append_ms"] for r in records)
        span = (appends[-1] - appends[0]) / 1000 if len(appends) > 1 else 0.0
        # the second half of the drain: past most of the start-up (and of a JVM's JIT warm-up)
        half = (appends[-1] - appends[len(appends) // 2]) / 1000 if len(appends) > 2 else 0.0
        total = timing["done"] - started
        startup = timing["first"] - started
        result = {
            "events": count,
            "seconds_from_start": round(total, 2),
            "events_per_second_from_start": round(count / total),
            "seconds_to_first_record": round(startup, 2),
            "seconds_first_to_last_append": round(span, 3),
            "events_per_second_first_to_last": round((count - 1) / span) if span else None,
            "events_per_second_second_half": (
                round((len(appends) - 1 - len(appends) // 2) / half) if half else None
            ),
            "relay_rss_mb_at_done": rss_mb(process.pid),
            "cpu_from_start": self.cpu_between(s0, s1),
            "cpu_first_to_done": self.cpu_between(marks["first"], s1),
            "delivery": check,
            "loadavg_before_after": [load_before, loadavg()],
        }
        if which == "debezium":
            result["slot_before"] = wal_before
        return result, process

    async def steady(
        self, which: str, process: subprocess.Popen[bytes], rate: float
    ) -> dict[str, Any]:
        a = self.args
        assert self.pool is not None
        topic = DBZ_TOPIC if which == "debezium" else FANOUT_TOPIC
        first_id = await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
        base = await self.end_offsets(topic)
        lsn = await self.wal_lsn()
        load_before = loadavg()
        s0 = await self.snapshot(process, which)
        context = multiprocessing.get_context("spawn")
        pipes, writers = [], []
        for _ in range(a.writers):
            receiving, sending = context.Pipe(duplex=False)
            writer = context.Process(
                target=_writer_process, args=(self.url, rate / a.writers, a.seconds, sending)
            )
            writer.start()
            sending.close()
            pipes.append(receiving)
            writers.append(writer)
        outcomes = [await asyncio.to_thread(pipe.recv) for pipe in pipes]
        for writer in writers:
            await asyncio.to_thread(writer.join)
        writers_done = time.perf_counter()
        achieved = sum(c for c, _ in outcomes) / max(e for _, e in outcomes)
        rows = await self.pool.fetch(
            "SELECT event_id::text AS event_id, txid::text::bigint AS txid,"
            " extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS committed"
            " FROM outbox WHERE id > $1",
            first_id,
        )
        timing = await self.wait_grown(
            process, which, topic, base, len(rows), 180, time.perf_counter()
        )
        s1 = await self.snapshot(process, which)
        wal = await self.wal_bytes(lsn)
        records = await self.records(topic, base)
        check = self.delivery_check(records, {r["event_id"] for r in rows})
        appended: dict[str, int] = {}
        for r in records:
            appended.setdefault(r["event_id"], r["append_ms"])
        lags = sorted(
            appended[r["event_id"]] / 1000 - r["committed"]
            for r in rows
            if r["event_id"] in appended
        )

        def pct(q: float) -> float:
            return round(1000 * float(lags[min(len(lags) - 1, int(q * len(lags)))]), 1)

        horizon: dict[str, Any] = {}
        if which == "fanout":
            visible = visible_times([(r["txid"], r["committed"]) for r in rows])
            waits = [visible[r["txid"]] - r["committed"] for r in rows]
            after = [
                appended[r["event_id"]] / 1000 - visible[r["txid"]]
                for r in rows
                if r["event_id"] in appended
            ]
            horizon = {
                "horizon_wait_ms": percentiles_ms(waits),
                "lag_after_horizon_ms": percentiles_ms(after),
            }
        window = s1["t"] - s0["t"]
        cpu = self.cpu_between(s0, s1)
        rss = rss_mb(process.pid)
        return {
            "offered_per_second": rate,
            "achieved_per_second": round(achieved, 1),
            "seconds": a.seconds,
            "events": len(rows),
            "lag_ms": {
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "max": round(1000 * lags[-1], 1),
            },
            **horizon,
            "seconds_writers_done_to_delivered": round(timing["done"] - writers_done, 2),
            "window_seconds": round(window, 2),
            "cpu": cpu,
            "relay_cpu_ms_per_event": round(
                1000 * (cpu["relay_process_cpu_s"] + cpu["relay_pg_backends_cpu_s"]) / len(rows), 3
            ),
            "wal_bytes_per_event": round(wal / len(rows)),
            "relay_rss_mb_at_end": rss,
            "delivery": check,
            "loadavg_before_after": [load_before, loadavg()],
        }

    async def reconfigure(self, changes: dict[str, str], process: subprocess.Popen[bytes]) -> None:
        """Change the running connector's configuration through Connect's REST API (the task
        restarts from its committed offset), and wait until it streams again."""
        config = dict(
            line.split("=", 1)
            for line in (self.work / "connector.properties").read_text().splitlines()
            if line and not line.startswith("#")
        )
        config.update(changes)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.args.connect_port}/connectors/{CONNECTOR}/config",
            data=json.dumps(config).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        await asyncio.to_thread(put_request, request)
        await asyncio.sleep(2)
        started = time.perf_counter()
        while self.connector_state() != "RUNNING":
            self.check_alive(process, "debezium")
            if time.perf_counter() - started > 60:
                raise RuntimeError("Debezium did not restart after the reconfiguration")
            await asyncio.sleep(0.5)
        base = await self.end_offsets(DBZ_TOPIC)
        await self.fill_outbox(WARMUP_EVENTS, prefix="warmup-")
        await self.wait_grown(
            process, "debezium", DBZ_TOPIC, base, WARMUP_EVENTS, 120, time.perf_counter()
        )

    async def relay_ready(self, process: subprocess.Popen[bytes]) -> None:
        assert self.pool is not None
        started = time.perf_counter()
        while (
            await self.pool.fetchval(
                "SELECT count(*) FROM relay_positions WHERE sink = 'kafka' AND owner IS NOT NULL"
                " AND lease_expires_at > now()"
            )
            < 16
        ):
            self.check_alive(process, "fanout")
            if time.perf_counter() - started > 60:
                raise RuntimeError("fanout relay holds no leases after 60 s")
            await asyncio.sleep(0.2)

    async def start_warm(self, which: str, variant: str) -> subprocess.Popen[bytes]:
        """Start a relay, wait until it has delivered what was written while it was stopped,
        then warm it with WARMUP_EVENTS events."""
        assert self.pool is not None
        topic = DBZ_TOPIC if which == "debezium" else FANOUT_TOPIC
        base = await self.end_offsets(topic)  # read before the start: nothing moves it now
        pending = await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE id > $1", self.stopped_at.get(which, 0)
        )
        process = self.spawn(which, variant)
        started = time.perf_counter()
        if which == "debezium":
            while self.connector_state() != "RUNNING":
                self.check_alive(process, which)
                if time.perf_counter() - started > 180:
                    raise RuntimeError("Debezium did not start in 180 s")
                await asyncio.sleep(0.5)
        else:
            await self.relay_ready(process)
        await self.wait_grown(
            process, which, topic, base, pending, max(180.0, pending / 500), started
        )
        base = await self.end_offsets(topic)
        await self.fill_outbox(WARMUP_EVENTS, prefix="warmup-")
        await self.wait_grown(process, which, topic, base, WARMUP_EVENTS, 120, time.perf_counter())
        return process

    async def stop_relay(self, process: subprocess.Popen[bytes], which: str) -> None:
        """Stop a relay that has delivered everything written so far."""
        assert self.pool is not None
        self.stop(process)
        self.stopped_at[which] = await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox")

    async def main(self) -> dict[str, Any]:
        a = self.args
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        log("database, seed, topics")
        await self.reset_database()
        await self.reset_topics()
        self.write_configs()
        await self.create_slot()
        results: dict[str, Any] = {"drain": {}, "steady": {}, "steady_runs": []}
        first_rate = a.rates[0]

        if a.events:
            log(f"drain: {a.events} events written with both relays stopped")
            await self.truncate()
            await self.fill_outbox(a.events)
            await self.pool.execute("ANALYZE outbox")  # type: ignore[union-attr]
            results["drain"]["fanout"], relay = await self.drain("fanout", a.events)
            await self.stop_relay(relay, "fanout")
            rate = results["drain"]["fanout"]["events_per_second_from_start"]
            log(f"drain fanout relay: {rate}/s")
            results["drain"]["debezium"], connect = await self.drain("debezium", a.events)
            log(f"drain Debezium: {results['drain']['debezium']['events_per_second_from_start']}/s")
            # Debezium hands the Connect task a batch every poll.interval.ms (500 by default)
            # unless max.batch.size (2048) events are queued: at a few hundred events/s that
            # interval is most of its lag. Once with its defaults, right after its drain.
            log(f"steady Debezium: {first_rate}/s offered for {a.seconds} s")
            results["steady"]["debezium"] = await self.steady("debezium", connect, first_rate)
            results["steady"]["debezium"]["slot_while_running"] = await self.slot_state()
            await self.stop_relay(connect, "debezium")
        else:
            # no drain: the fanout relay starts from the beginning of the outbox, Debezium
            # from where create_slot left its slot
            self.stopped_at = {
                "fanout": 0,
                "debezium": await self.pool.fetchval(  # type: ignore[union-attr]
                    "SELECT coalesce(max(id), 0) FROM outbox"
                ),
            }

        tuned = f"debezium_poll{a.dbz_poll_ms}ms" if a.dbz_poll_ms else "debezium"
        if a.dbz_poll_ms:
            self.tune_connector(a.dbz_poll_ms)
        contenders = [("debezium", tuned), *(("fanout", name) for name in self.fanout_names())]
        for repeat in range(a.repeats):
            # alternating order: neither side always runs on the warmer machine
            for which, name in contenders if repeat % 2 == 0 else contenders[::-1]:
                process = await self.start_warm(which, name if which == "fanout" else FANOUT)
                rates = a.rates if repeat % 2 == 0 else a.rates[::-1]
                for rate in rates:
                    log(f"steady {name} (run {repeat + 1}): {rate}/s offered for {a.seconds} s")
                    run = await self.steady(which, process, rate)
                    log(
                        f"  lag p50 {run['lag_ms']['p50']} ms, p99 {run['lag_ms']['p99']} ms, "
                        f"max {run['lag_ms']['max']} ms"
                    )
                    results["steady_runs"].append({"relay": name, "repeat": repeat, **run})
                    if rate == first_rate and name not in results["steady"]:
                        results["steady"][name] = run
                await self.stop_relay(process, which)
        results["steady"]["fanout"]["debezium_slot_while_stopped"] = await self.slot_state()
        results["steady_summary"] = summarise(results["steady_runs"], tuned)

        d = results["drain"]
        if d:
            results["ratios_debezium_over_fanout"] = {
                "drain_events_per_second_from_start": round(
                    d["debezium"]["events_per_second_from_start"]
                    / d["fanout"]["events_per_second_from_start"],
                    2,
                ),
                "drain_events_per_second_first_to_last": round(
                    (d["debezium"]["events_per_second_first_to_last"] or 0)
                    / (d["fanout"]["events_per_second_first_to_last"] or 1),
                    2,
                ),
                "drain_events_per_second_second_half": round(
                    (d["debezium"]["events_per_second_second_half"] or 0)
                    / (d["fanout"]["events_per_second_second_half"] or 1),
                    2,
                ),
            }
        return {
            "experiment": "debezium-vs-fanout-relay",
            "recorded_at": started_at,
            "machine": {
                "cores": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "settings": {
                "events": a.events,
                "rates": a.rates,
                "repeats": a.repeats,
                "seconds": a.seconds,
                "writers": a.writers,
                "kafka": a.kafka_version,
                "debezium": a.debezium_version,
                "connect_heap": a.heap,
                "topic_partitions": PARTITIONS,
                "debezium_tuned_poll_interval_ms": a.dbz_poll_ms,
                "per_transaction_in_drain": PER_TRANSACTION,
                "debezium_config": (self.work / "connector.properties").read_text(),
                "connect_worker_config": (self.work / "worker.properties").read_text(),
                "fanout_relay_configs": {
                    name: (self.work / f"{name}.yaml").read_text() for name in self.fanout_names()
                },
            },
            **results,
        }

    def fanout_names(self) -> list[str]:
        return [FANOUT, *(name for name, _ in self.args.fanout_variant)]

    async def close(self, drop_slot: bool) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.pool is not None:
            await self.pool.close()
        if drop_slot:
            admin = await asyncpg.connect(self.admin_url)
            try:
                await admin.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = $1 AND NOT active",
                    SLOT,
                )
            finally:
                await admin.close()


def with_overrides(settings: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested ``settings`` with each dotted key of ``overrides`` set."""
    result: dict[str, Any] = json.loads(json.dumps(settings))
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return result


def relay_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:key.path=value,key.path=value`` (values in YAML) as (NAME, overrides)."""
    name, _, assignments = text.partition(":")
    if not name.isidentifier() or name == FANOUT or not assignments:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME:key.path=value[,key.path=value] with NAME a new identifier"
        )
    overrides = {}
    for assignment in assignments.split(","):
        key, equals, value = assignment.partition("=")
        if not equals or not key:
            raise argparse.ArgumentTypeError(f"{assignment!r}: expected key.path=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def visible_times(committed: list[tuple[int, float]]) -> dict[int, float]:
    """When each transaction's rows became readable by the fanout relay, which reads only
    below the oldest transaction still running: the latest commit among it and every
    transaction with a lower txid (of those given: transactions that wrote no outbox row, such
    as the relay's own, are not seen, so this is a lower bound)."""
    visible: dict[int, float] = {}
    latest = float("-inf")
    for txid, at in sorted(committed):
        latest = max(latest, at)
        visible[txid] = latest
    return visible


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of durations in seconds, in milliseconds."""
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(1000 * ordered[-1], 1)}


def rates(text: str) -> list[float]:
    """``300,600`` as [300.0, 600.0]."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected rates like 300,600") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every rate must be above 0")
    return values


def horizon_summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median over runs of the p50 and p99 of the wait for the visibility horizon and of the
    lag after it (fanout relays' runs only)."""
    if not all(r.get("horizon_wait_ms") for r in runs):
        return {}
    return {
        f"{part}_{q}_ms_median": statistics.median(r[f"{part}_ms"][q] for r in runs)
        for part in ("horizon_wait", "lag_after_horizon")
        for q in ("p50", "p99")
    }


def summarise(runs: list[dict[str, Any]], rival: str) -> dict[str, Any]:
    """Per rate and relay, the runs' lag percentiles (median, and the spread of p99 across
    runs) and relay CPU per event; per rate, each fanout relay's p99 over ``rival``'s."""
    summary: dict[str, Any] = {}
    for rate in sorted({r["offered_per_second"] for r in runs}):
        at_rate = [r for r in runs if r["offered_per_second"] == rate]
        relays: dict[str, Any] = {}
        for name in dict.fromkeys(r["relay"] for r in at_rate):
            mine = [r for r in at_rate if r["relay"] == name]
            p99 = [r["lag_ms"]["p99"] for r in mine]
            relays[name] = {
                **horizon_summary(mine),
                "runs": len(mine),
                "p50_ms_median": statistics.median(r["lag_ms"]["p50"] for r in mine),
                "p99_ms_median": statistics.median(p99),
                "p99_ms_min": min(p99),
                "p99_ms_max": max(p99),
                "p99_spread": round(max(p99) / min(p99), 2) if min(p99) > 0 else None,
                "max_ms": max(r["lag_ms"]["max"] for r in mine),
                "relay_cpu_ms_per_event_median": statistics.median(
                    r["relay_cpu_ms_per_event"] for r in mine
                ),
                "achieved_per_second_median": statistics.median(
                    r["achieved_per_second"] for r in mine
                ),
                "lost_or_repeated": sum(
                    r["delivery"]["missing"] + r["delivery"]["duplicates"] for r in mine
                ),
            }
        ratios = {}
        if rival in relays:
            for name, figures in relays.items():
                if name != rival and relays[rival]["p99_ms_median"]:
                    ratios[name] = round(
                        figures["p99_ms_median"] / relays[rival]["p99_ms_median"], 2
                    )
        summary[f"{rate:g}"] = {"relays": relays, f"p99_over_{rival}": ratios}
    return summary


def table(r: dict[str, Any]) -> str:
    d, s = r["drain"], r["steady"]
    drains = [k for k in ("fanout", "debezium") if k in d]
    steadies = ["fanout", *[k for k in s if k != "fanout"]]
    names = {"fanout": "fanout relay", "debezium": "Debezium"}
    lines: list[str] = []

    def header(keys: list[str]) -> None:
        lines.append(
            f"  {'':42}"
            + "".join(f" {names.get(k, k.replace('debezium_', 'Dbz ')):>16}" for k in keys)
        )

    def row(label: str, values: list[Any]) -> None:
        lines.append(f"  {label:42}" + "".join(f" {v!s:>16}" for v in values))

    def dup(x: dict[str, Any]) -> str:
        return "{duplicates}/{missing}/{out_of_order}".format(**x["delivery"])

    if drains:
        lines.append(f"drain: {r['settings']['events']} events in the outbox, relay started cold")
        header(drains)
        row(
            "events/s, process start to all in Kafka",
            [d[k]["events_per_second_from_start"] for k in drains],
        )
        row("seconds to first record (start-up)", [d[k]["seconds_to_first_record"] for k in drains])
        row(
            "events/s, first to last append",
            [d[k]["events_per_second_first_to_last"] for k in drains],
        )
        row(
            "events/s, second half of the drain",
            [d[k]["events_per_second_second_half"] for k in drains],
        )
        for key, label in (
            ("relay_process_cpu_s", "CPU s relay process (start to done)"),
            ("relay_pg_backends_cpu_s", "CPU s its PG backends / walsender"),
            ("postgres_total_cpu_s", "CPU s all PostgreSQL"),
            ("kafka_broker_cpu_s", "CPU s Kafka broker"),
        ):
            row(label, [d[k]["cpu_from_start"][key] for k in drains])
        row(
            "CPU s relay process (first to done)",
            [d[k]["cpu_first_to_done"]["relay_process_cpu_s"] for k in drains],
        )
        row("relay process RSS MB at the end", [d[k]["relay_rss_mb_at_done"] for k in drains])
        row("duplicates / missing / out of order", [dup(d[k]) for k in drains])
    f = s["fanout"]
    lines.append(
        f"steady: {f['offered_per_second']} orders/s offered for {f['seconds']} s "
        "through Gateway.place_order"
    )
    header(steadies)
    row("achieved orders/s", [s[k]["achieved_per_second"] for k in steadies])
    for q in ("p50", "p99", "max"):
        row(f"commit->Kafka lag {q} ms", [s[k]["lag_ms"][q] for k in steadies])
    for key, label in (
        ("relay_process_cpu_s", "CPU s relay process"),
        ("relay_pg_backends_cpu_s", "CPU s its PG backends / walsender"),
        ("postgres_total_cpu_s", "CPU s all PostgreSQL (incl. writes)"),
        ("kafka_broker_cpu_s", "CPU s Kafka broker"),
    ):
        row(label, [s[k]["cpu"][key] for k in steadies])
    row(
        "relay CPU ms/event (process + backends)",
        [s[k]["relay_cpu_ms_per_event"] for k in steadies],
    )
    row("WAL bytes per order", [s[k]["wal_bytes_per_event"] for k in steadies])
    row("relay process RSS MB at the end", [s[k]["relay_rss_mb_at_end"] for k in steadies])
    row("duplicates / missing / out of order", [dup(s[k]) for k in steadies])
    row(
        "mean record bytes (key+value+headers)",
        [s[k]["delivery"]["mean_record_bytes"] for k in steadies],
    )
    if "ratios_debezium_over_fanout" in r:
        ratios = r["ratios_debezium_over_fanout"]
        lines.append(
            "ratio Debezium/fanout, drain events/s: from process start "
            f"{ratios['drain_events_per_second_from_start']}, first to last append "
            f"{ratios['drain_events_per_second_first_to_last']}, second half "
            f"{ratios['drain_events_per_second_second_half']}"
        )
    for rate, at_rate in r.get("steady_summary", {}).items():
        relays = at_rate["relays"]
        keys = list(relays)
        lines.append(f"steady at {rate} orders/s, {r['settings']['repeats']} run(s) each")
        header(keys)
        row("lag p50 ms (median of runs)", [relays[k]["p50_ms_median"] for k in keys])
        row("lag p99 ms (median of runs)", [relays[k]["p99_ms_median"] for k in keys])
        row(
            "lag p99 ms, lowest-highest run",
            [f"{relays[k]['p99_ms_min']}-{relays[k]['p99_ms_max']}" for k in keys],
        )
        row("p99 spread (highest/lowest)", [relays[k]["p99_spread"] for k in keys])
        for part, label in (("horizon_wait", "horizon wait"), ("lag_after_horizon", "after it")):
            for q in ("p50", "p99"):
                row(
                    f"  of which {label} {q} ms (median)",
                    [relays[k].get(f"{part}_{q}_ms_median", "") for k in keys],
                )
        row("lag max ms (all runs)", [relays[k]["max_ms"] for k in keys])
        row(
            "relay CPU ms/event (median of runs)",
            [relays[k]["relay_cpu_ms_per_event_median"] for k in keys],
        )
        row("lost or repeated (all runs)", [relays[k]["lost_or_repeated"] for k in keys])
        for key, ratios in at_rate.items():
            if key.startswith("p99_over_") and ratios:
                lines.append(
                    f"  p99 over {key.removeprefix('p99_over_')}: "
                    + ", ".join(f"{name} {ratio}" for name, ratio in ratios.items())
                )
    slot = f["debezium_slot_while_stopped"]
    if slot.get("exists"):
        lines.append(
            "WAL held by Debezium's slot after the fanout steady phase (Debezium stopped): "
            f"{slot['retained_wal_bytes'] / 1e6:.1f} MB"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=20_000, help="events of the drain phase (0: no drain)"
    )
    parser.add_argument(
        "--rates", type=rates, default=[200.0], help="offered orders/s of the steady phases"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="steady runs of each relay at each rate"
    )
    parser.add_argument(
        "--fanout-variant",
        type=relay_variant,
        action="append",
        default=[],
        help="another fanout relay to run, NAME:key.path=value[,...] over its settings",
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--kafka-port", type=int, required=True)
    parser.add_argument("--kafka-pidfile", required=True)
    parser.add_argument("--connect-port", type=int, required=True)
    parser.add_argument("--lib", required=True, help="Connect + Debezium jars")
    parser.add_argument("--java", required=True)
    parser.add_argument("--heap", default="-Xms256m -Xmx1g")
    parser.add_argument("--work", required=True, help="configs, logs, Connect offsets")
    parser.add_argument("--out", required=True)
    parser.add_argument("--kafka-version", default="4.1.1")
    parser.add_argument("--debezium-version", default="")
    parser.add_argument("--keep-slot", action="store_true")
    parser.add_argument(
        "--dbz-poll-ms",
        type=int,
        default=10,
        help="a second Debezium steady phase with this poll.interval.ms (0: none)",
    )
    args = parser.parse_args()

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    run = Run(args)

    async def go() -> dict[str, Any]:
        try:
            return await run.main()
        finally:
            for child in list(CHILDREN):
                run.stop(child, timeout=30)
            await run.close(drop_slot=not args.keep_slot)

    results = asyncio.run(go())
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
