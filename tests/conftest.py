"""Shared fixtures: settings isolated from the developer's own FANOUT_* settings."""

from __future__ import annotations

import os

from tests.environment import remove_gateway_settings

# The suite builds its own settings; a developer's FANOUT_* settings must not leak into them.
remove_gateway_settings(os.environ)
