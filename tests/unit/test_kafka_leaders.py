"""Whether topics just created have their leaders, from the broker's metadata answer."""

from __future__ import annotations

from typing import Any

from adapters.kafka import all_led


def topic(name: str, leaders: list[int], error_code: int = 0) -> dict[str, Any]:
    partitions = [
        {"error_code": 0, "partition": index, "leader": leader}
        for index, leader in enumerate(leaders)
    ]
    return {"error_code": error_code, "topic": name, "partitions": partitions}


def test_every_partition_of_every_topic_led_is_ready() -> None:
    assert all_led([topic("a.order", [1, 1, 1]), topic("a.item", [1, 2])], {"a.order", "a.item"})


def test_a_topic_the_broker_does_not_know_yet_is_not() -> None:
    unknown = topic("a.item", [], error_code=3)
    assert not all_led([topic("a.order", [1]), unknown], {"a.order", "a.item"})
    assert not all_led([topic("a.order", [1])], {"a.order", "a.item"})


def test_a_partition_without_a_leader_or_with_an_error_is_not() -> None:
    assert not all_led([topic("a.item", [1, -1, 1])], {"a.item"})
    electing = topic("a.item", [1])
    electing["partitions"][0]["error_code"] = 5  # LEADER_NOT_AVAILABLE
    assert not all_led([electing], {"a.item"})
    assert not all_led([topic("a.item", [])], {"a.item"})
