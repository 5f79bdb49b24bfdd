"""The decisions of moving a customer between shards (``gateway.sharding.move_rules``)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from gateway.sharding.move_rules import (
    MAX_HOPS,
    DeliveryWait,
    MoveState,
    Recovery,
    catalog_step_retry,
    delivery_wait,
    follow_tombstone,
    move_refusal,
    recovery_of,
)

SHARDS = {"alpha", "beta", "gamma"}


def test_a_tombstone_naming_a_known_shard_is_followed() -> None:
    assert follow_tombstone("beta", 0, SHARDS) == "beta"


def test_no_tombstone_means_not_found() -> None:
    assert follow_tombstone(None, 0, SHARDS) is None


def test_a_tombstone_naming_an_unknown_shard_means_not_found() -> None:
    assert follow_tombstone("delta", 0, SHARDS) is None


def test_a_chain_is_followed_up_to_the_hop_limit() -> None:
    assert follow_tombstone("gamma", 1, SHARDS) == "gamma"
    assert follow_tombstone("gamma", MAX_HOPS - 1, SHARDS) == "gamma"
    assert follow_tombstone("gamma", MAX_HOPS, SHARDS) is None


def test_a_move_the_source_committed_rolls_forward() -> None:
    move_id = uuid4()
    for state in (MoveState.STARTED, MoveState.FENCED):
        assert recovery_of(state, False, move_id, move_id) is Recovery.ROLL_FORWARD


def test_a_move_the_source_did_not_commit_rolls_back_whatever_its_record_says() -> None:
    move_id = uuid4()
    for state in (MoveState.STARTED, MoveState.FENCED):
        assert recovery_of(state, True, None, move_id) is Recovery.ROLL_BACK
        # A tombstone of an earlier move of the customer (it came back since) is not this one's.
        assert recovery_of(state, True, uuid4(), move_id) is Recovery.ROLL_BACK


def test_a_customer_on_neither_side_is_given_up_without_touching_a_shard() -> None:
    move_id = uuid4()
    assert recovery_of(MoveState.STARTED, False, None, move_id) is Recovery.GIVE_UP
    assert recovery_of(MoveState.STARTED, False, uuid4(), move_id) is Recovery.GIVE_UP


@pytest.mark.parametrize("state", [MoveState.DONE, MoveState.ROLLED_BACK])
def test_a_finished_move_needs_nothing(state: MoveState) -> None:
    move_id = uuid4()
    assert recovery_of(state, False, move_id, move_id) is Recovery.NOTHING
    assert recovery_of(state, True, None, move_id) is Recovery.NOTHING


def test_the_pause_waits_until_delivered_or_the_deadline() -> None:
    assert delivery_wait(0, 10.0, 5.0) is DeliveryWait.DELIVERED
    assert delivery_wait(3, 1.0, 5.0) is DeliveryWait.WAIT
    assert delivery_wait(3, 5.0, 5.0) is DeliveryWait.TIMED_OUT


def test_a_move_needs_two_different_configured_shards() -> None:
    assert move_refusal("alpha", "beta", SHARDS) is None
    assert "already" in (move_refusal("alpha", "alpha", SHARDS) or "")
    assert "not configured" in (move_refusal("alpha", "delta", SHARDS) or "")
    assert "not configured" in (move_refusal("delta", "alpha", SHARDS) or "")


def test_the_catalog_step_tries_again_doubling_until_its_patience_runs_out() -> None:
    assert catalog_step_retry(0.0) == 0.02
    assert catalog_step_retry(0.1) == 0.1
    assert catalog_step_retry(3.0) == 0.5
    assert catalog_step_retry(4.9) == pytest.approx(0.1)
    assert catalog_step_retry(5.0) is None
    assert catalog_step_retry(1.0, patience=0.5) is None
