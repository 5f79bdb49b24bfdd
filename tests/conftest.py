"""Shared fixtures: settings isolated from the developer's own FANOUT_* environment."""

from __future__ import annotations

import os

# The suite builds its own settings; a developer's FANOUT_* variables must not leak into them.
for _name in list(os.environ):
    if _name.startswith("FANOUT_") and not _name.startswith("FANOUT_TEST_"):
        del os.environ[_name]
