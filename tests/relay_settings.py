"""Relay settings for tests: short polls, leases and backoffs, so that tests run fast."""

from __future__ import annotations

from gateway.configuration.settings import RelaySettings

FAST = RelaySettings(
    batch_size=200,
    linger_ms=0,
    poll_interval_seconds=0.05,
    lease_ttl_seconds=1.5,
    max_attempts=3,
    backoff_initial_seconds=0.005,
    backoff_max_seconds=0.05,
    prune_interval_seconds=3600,
    shutdown_timeout_seconds=10,
)
