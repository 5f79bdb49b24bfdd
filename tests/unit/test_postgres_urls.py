"""PostgreSQL URLs naming a cluster's hosts: what writes may go to, and each host for reads."""

from __future__ import annotations

import pytest

from gateway.configuration.postgres_urls import (
    hosts_of,
    one_url_per_host,
    session_attrs_of,
    writable_url_problem,
)
from gateway.configuration.settings import PostgresSettings
from gateway.postgres.replicas import replica_urls

CLUSTER = "postgresql://fanout:s3cret@10.0.0.11:5432,10.0.0.12:5433,[::1]:5434/fanout"


def test_the_hosts_of_a_multi_host_url_are_read_in_order() -> None:
    assert hosts_of(CLUSTER) == ["10.0.0.11:5432", "10.0.0.12:5433", "[::1]:5434"]
    assert hosts_of("postgresql://u@db/x") == ["db"]


def test_each_host_gets_a_url_of_its_own_without_the_role_it_asked_for() -> None:
    url = CLUSTER + "?target_session_attrs=read-write&sslmode=disable"
    assert one_url_per_host(url) == [
        "postgresql://fanout:s3cret@10.0.0.11:5432/fanout?sslmode=disable",
        "postgresql://fanout:s3cret@10.0.0.12:5433/fanout?sslmode=disable",
        "postgresql://fanout:s3cret@[::1]:5434/fanout?sslmode=disable",
    ]
    assert session_attrs_of(url) == "read-write"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@db/x",
        "postgresql://u@db/x?target_session_attrs=any",
        CLUSTER + "?target_session_attrs=read-write",
        CLUSTER + "?target_session_attrs=primary",
    ],
)
def test_writes_may_go_to_one_host_or_to_a_cluster_s_primary(url: str) -> None:
    assert writable_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (CLUSTER, "add target_session_attrs=read-write"),
        (CLUSTER + "?target_session_attrs=any", "add target_session_attrs=read-write"),
        ("postgresql://u@db/x?target_session_attrs=standby", "would send writes to a standby"),
        (CLUSTER + "?target_session_attrs=prefer-standby", "would send writes to a standby"),
        ("postgresql://u@db/x?target_session_attrs=leader", "'leader' is not one of"),
    ],
)
def test_a_url_that_could_send_writes_to_a_standby_is_refused(url: str, said: str) -> None:
    problem = writable_url_problem(url)
    assert problem is not None and said in problem


@pytest.mark.parametrize("url", [CLUSTER, "postgresql://fanout:S3cretPW@h1:5432,h2:5432/db"])
def test_the_settings_refuse_it_naming_the_key_and_not_the_password(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        PostgresSettings(url=url)
    message = str(refused.value)
    assert "url" in message and "target_session_attrs=read-write" in message
    assert "s3cret" not in message.lower()


def test_reading_from_standbys_needs_the_cluster_s_hosts() -> None:
    with pytest.raises(ValueError, match="read_from_standbys"):
        PostgresSettings(url="postgresql://u@db/x", read_from_standbys=True)


def test_hosts_that_may_serve_reads_are_each_replica_and_each_cluster_host() -> None:
    settings = PostgresSettings(
        url=CLUSTER + "?target_session_attrs=read-write",
        replicas=["postgresql://fanout:s3cret@10.0.0.12:5433/fanout", "postgresql://r@other/x"],
        read_from_standbys=True,
    )
    assert replica_urls(settings) == {
        "postgresql://fanout:s3cret@10.0.0.12:5433/fanout": True,
        "postgresql://r@other/x": False,
        "postgresql://fanout:s3cret@10.0.0.11:5432/fanout": True,
        "postgresql://fanout:s3cret@[::1]:5434/fanout": True,
    }
