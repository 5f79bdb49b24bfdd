"""``FANOUT_SINKS_<NAME>_<KEY>``: a configured sink's settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.configuration.settings import load_settings
from gateway.configuration.sink_environment import (
    sink_overrides,
    sink_variable,
    unmatched_variables,
)
from gateway.errors import ConfigError

CONFIG = """
postgres: {url: 'postgresql://u@h/db'}
sinks:
  redis: {type: redis, url: 'redis://file:6379/0'}
  order_cache: {type: redis, url: 'redis://cache:6379/0', key_prefix: 'o:'}
  order: {type: memory}
"""


def test_a_variable_is_matched_to_the_longest_sink_name_it_starts_with() -> None:
    sinks: dict[str, dict[str, str]] = {
        "order": {},
        "order_cache": {},
        "redis": {},
        "events-log": {},
    }
    environ = {
        "FANOUT_SINKS_ORDER_CACHE_KEY_PREFIX": "c:",
        "FANOUT_SINKS_ORDER_DELAY_SECONDS": "2",
        "FANOUT_SINKS_EVENTS_LOG_URL": "kafka://k:9092",
        "FANOUT_SINKS_UNKNOWN_URL": "x",
        "FANOUT_SINKS_REDIS_": "nothing named",
        "FANOUT_API_PORT": "9000",
    }
    assert sink_overrides(sinks, environ) == {
        "order_cache": {"key_prefix": "c:"},
        "order": {"delay_seconds": "2"},
        "events-log": {"url": "kafka://k:9092"},
    }
    assert sink_variable("events-log", "url") == "FANOUT_SINKS_EVENTS_LOG_URL"
    assert unmatched_variables(sinks, environ) == [
        "FANOUT_SINKS_REDIS_",
        "FANOUT_SINKS_UNKNOWN_URL",
    ]


def test_the_environment_overrides_a_sinks_keys_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("FANOUT_SINKS_REDIS_URL", "redis://from-env:6379/0")
    monkeypatch.setenv("FANOUT_SINKS_ORDER_CACHE_TTL_SECONDS", "60")

    settings = load_settings(path)

    redis, cache = settings.sinks["redis"], settings.sinks["order_cache"]
    assert redis.type == "redis" and redis.url.get_secret_value() == "redis://from-env:6379/0"
    assert cache.type == "redis" and (cache.ttl_seconds, cache.key_prefix) == (60, "o:")
    assert cache.url.get_secret_value() == "redis://cache:6379/0"


NO_SINKS = "postgres: {url: 'postgresql://u@h/db'}\n"


@pytest.mark.parametrize(
    ("config", "variable", "value", "expected"),
    [
        # A bad value: the key and the variable.
        (CONFIG, "FANOUT_SINKS_ORDER_CACHE_TTL_SECONDS", "soon", ["sinks.order_cache.ttl_seconds"]),
        # A key the sink does not have.
        (CONFIG, "FANOUT_SINKS_REDIS_COLOUR", "blue", ["sinks.redis.colour: unknown key"]),
        # A sink the file does not configure (a typo).
        (
            CONFIG,
            "FANOUT_SINKS_REDDIS_URL",
            "redis://typo:6379/0",
            ["its sinks: redis, order_cache, order"],
        ),
        (
            NO_SINKS,
            "FANOUT_SINKS_REDIS_URL",
            "redis://nowhere:6379/0",
            ["names no sink of the file (its sinks: none)"],
        ),
    ],
)
def test_a_bad_sink_variable_is_refused_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: str,
    variable: str,
    value: str,
    expected: list[str],
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(config)
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    message = str(raised.value)
    assert variable in message
    for part in expected:
        assert part in message
