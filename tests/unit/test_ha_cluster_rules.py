"""The rules of support/ha_cluster.py: what Patroni's member list means, where the nodes are,
and which packets a partition drops."""

from __future__ import annotations

import re
from pathlib import Path

from support.ha_cluster import MODE_FLAGS, member_from, partition_rules, read_nodes

ROOT = Path(__file__).resolve().parents[2]


def test_a_partition_drops_etcd_by_port_and_the_other_nodes_by_address() -> None:
    rules = partition_rules("10.231.0.1", 52379, ["10.231.0.12", "10.231.0.13"])

    assert ["-d", "10.231.0.1", "-p", "tcp", "--dport", "52379", "-j", "DROP"] in rules
    assert ["-s", "10.231.0.1", "-p", "tcp", "--sport", "52379", "-j", "DROP"] in rules
    for other in ("10.231.0.12", "10.231.0.13"):
        assert ["-d", other, "-j", "DROP"] in rules
        assert ["-s", other, "-j", "DROP"] in rules
    # The gateway address shares etcd's: everything else from it (PostgreSQL, REST) passes.
    assert all("10.231.0.1" not in rule or "52379" in rule for rule in rules)


def test_a_member_without_lag_or_timeline_has_none() -> None:
    leader = member_from(
        {"name": "ha1", "role": "leader", "state": "running", "host": "10.231.0.11", "timeline": 3}
    )
    unknown = member_from(
        {"name": "ha2", "role": "replica", "state": "streaming", "host": "h", "lag": "unknown"}
    )

    assert leader.lag is None and leader.timeline == 3 and not leader.is_streaming_replica
    assert unknown.lag is None and unknown.timeline is None and unknown.is_streaming_replica


def test_the_modes_set_patronis_synchronous_flags() -> None:
    assert MODE_FLAGS == {
        "async": (False, False),
        "sync": (True, False),
        "strict": (True, True),
    }


def test_the_nodes_are_read_from_the_configurations_the_script_renders(tmp_path: Path) -> None:
    template = (ROOT / "scripts" / "patroni" / "patroni.yml.template").read_text()
    for number in (1, 2):
        home = tmp_path / f"ha{number}"
        home.mkdir()
        rendered = (
            template.replace("@NODE@", f"ha{number}")
            .replace("@NODE_IP@", f"10.9.0.1{number}")
            .replace("@REST_PORT@", "8009")
            .replace("@PG_PORT@", "6432")
            .replace("@ETCD_HOST@", "10.9.0.1")
            .replace("@ETCD_PORT@", "42379")
        )
        rendered = re.sub(r"@[A-Z_]+@", "x", rendered)
        (home / "patroni.yml").write_text(rendered)

    nodes, etcd_host, etcd_port = read_nodes(tmp_path)

    assert sorted(nodes) == ["ha1", "ha2"]
    assert nodes["ha2"].host == "10.9.0.12"
    assert nodes["ha2"].postgres_port == 6432
    assert nodes["ha2"].rest_url == "http://10.9.0.12:8009"
    assert nodes["ha2"].netns == "fanout-ha2"
    assert (etcd_host, etcd_port) == ("10.9.0.1", 42379)
