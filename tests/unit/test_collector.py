"""The relay's garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.relay.collector import YOUNG_GENERATION_THRESHOLD, tune_for_relay


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    survivor = {"kept": [1, 2, 3]}

    frozen = tune_for_relay()

    assert frozen == gc.get_freeze_count() > 0
    assert not any(tracked is survivor for tracked in gc.get_objects())  # never scanned again
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD > 700


@pytest.mark.usefixtures("restored_collector")
def test_objects_made_after_tuning_are_still_collected() -> None:
    tune_for_relay()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle

    assert gc.collect() >= 1
