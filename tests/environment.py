"""The environment the test suite runs in: the developer's own settings kept out of it."""

from __future__ import annotations

from collections.abc import MutableMapping

KEPT_PREFIXES = ("FANOUT_TEST_", "FANOUT_SERVICES_")
"""Where the servers run: their URLs, and the ports and folder of ``scripts/services.sh``."""


def remove_gateway_settings(environ: MutableMapping[str, str]) -> None:
    """Delete the gateway's ``FANOUT_*`` settings from ``environ``, so that the suite builds
    its own; where the servers run (:data:`KEPT_PREFIXES`) stays."""
    for name in list(environ):
        if name.startswith("FANOUT_") and not name.startswith(KEPT_PREFIXES):
            del environ[name]
