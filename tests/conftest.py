"""Shared fixtures: settings isolated from the developer's own FANOUT_* settings; and the
suite's two groups, one per worker process (``-n 2 --dist loadgroup``)."""

from __future__ import annotations

import os

import pytest

from tests.environment import remove_gateway_settings
from tests.groups import OTHERS_GROUP

# The suite builds its own settings; a developer's FANOUT_* settings must not leak into them.
remove_gateway_settings(os.environ)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test not in the cluster's group goes into the other one (before pytest-xdist
    reads the groups)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(OTHERS_GROUP))
