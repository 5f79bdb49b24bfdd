"""How long the relay waits between attempts to reach PostgreSQL again: never long, so that
delivery resumes soon after a restart or a failover however long PostgreSQL was away."""

from __future__ import annotations

from gateway.configuration.settings import RelaySettings
from gateway.relay.context import database_backoff


def test_after_a_long_outage_the_wait_stays_under_the_database_cap() -> None:
    settings = RelaySettings()
    assert settings.backoff_max_seconds == 30.0  # a store's outage may wait this long
    waits = [database_backoff(settings).ceiling(attempt) for attempt in range(1, 40)]
    assert waits[:3] == [0.1, 0.2, 0.4]
    assert max(waits) == settings.database_retry_max_seconds == 1.0


def test_a_relay_backoff_shorter_than_the_cap_is_kept() -> None:
    settings = RelaySettings(backoff_max_seconds=0.5, database_retry_max_seconds=5)
    assert database_backoff(settings).ceiling(20) == 0.5
