"""Loading settings from YAML and the environment, and the errors that name the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway import ConfigError, load_settings

URL = "postgresql://app:s3cret@db.internal:5432/orders"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_loads_every_section_from_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"postgres:\n  url: {URL}\n  pool_max_size: 7\npricing:\n  tax_rate: '0.2'\n",
    )
    settings = load_settings(path)
    assert settings.postgres.url.get_secret_value() == URL
    assert settings.postgres.pool_max_size == 7
    assert settings.pricing.tax_rate == Decimal("0.2")
    assert settings.orders.max_items == 100


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f"postgres:\n  url: {URL}\n  pool_max_size: 7\n")
    monkeypatch.setenv("FANOUT_POSTGRES_URL", "postgresql://other/db")
    monkeypatch.setenv("FANOUT_POSTGRES_POOL_MAX_SIZE", "3")
    monkeypatch.setenv("FANOUT_PRICING_CURRENCY", "EUR")
    settings = load_settings(path)
    assert settings.postgres.url.get_secret_value() == "postgresql://other/db"
    assert settings.postgres.pool_max_size == 3
    assert settings.pricing.currency == "EUR"


def test_the_environment_alone_is_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FANOUT_POSTGRES_URL", URL)
    assert load_settings().postgres.url.get_secret_value() == URL


def test_fanout_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f"postgres:\n  url: {URL}\norders:\n  max_items: 3\n")
    monkeypatch.setenv("FANOUT_CONFIG", str(path))
    assert load_settings().orders.max_items == 3


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (f"postgres:\n  url: {URL}\n  pool_size: 3\n", "postgres.pool_size", "unknown key"),
        (f"postgres:\n  url: {URL}\nrelays: {{}}\n", "relays", "unknown key"),
        (f"postgres:\n  url: {URL}\n  pool_max_size: lots\n", "postgres.pool_max_size", "integer"),
        ("postgres:\n  pool_max_size: 3\n", "postgres.url", "required value is missing"),
        (f"postgres:\n  url: {URL}\npricing:\n  currency: euro\n", "pricing.currency", "pattern"),
        (f"postgres:\n  url: {URL}\npricing:\n  tax_rate: 2\n", "pricing.tax_rate", "less than"),
        (
            f"postgres:\n  url: {URL}\nrelay:\n  batches_in_flight: 0\n",
            "relay.batches_in_flight",
            "greater than or equal to 1",
        ),
        (
            f"postgres:\n  url: {URL}\npayments:\n  webhook_secret: [short]\n",
            "payments.webhook_secret",
            "at least 16 characters",
        ),
        (
            f"postgres:\n  url: {URL}\norders:\n  payment_timeout_seconds: 0\n",
            "orders.payment_timeout_seconds",
            "greater than 0",
        ),
        (
            f"postgres:\n  url: {URL}\nrelay:\n  apply_timeout_seconds: 0\n",
            "relay.apply_timeout_seconds",
            "greater than 0",
        ),
        (
            f"postgres:\n  url: {URL}\nsinks:\n  cache:\n    type: memory\n"
            "    apply_timeout_seconds: soon\n",
            "sinks.cache.apply_timeout_seconds",
            "number",
        ),
        (
            f"postgres:\n  url: {URL}\ntelemetry:\n  enabled: true\n  sampling_ratio: 2\n",
            "telemetry.sampling_ratio",
            "less than or equal to 1",
        ),
        (
            f"postgres:\n  url: {URL}\ntelemetry:\n  endpoint: http://collector:4317\n"
            "  sample: 0.1\n",
            "telemetry.sample",
            "unknown key",
        ),
        (
            f"postgres:\n  url: {URL}\ntelemetry:\n  endpoint: http://otel:s3cret@collector:4317\n",
            "telemetry.endpoint",
            "no credentials",
        ),
        (
            f"postgres:\n  url: {URL}\ntelemetry:\n  headers:\n    X-Api-Key: s3cret\n",
            "telemetry.headers",
            "'X-Api-Key' must be lower case",
        ),
        (
            f"postgres:\n  url: {URL}\ntelemetry:\n  headers:\n"
            "    'authorization: Bearer s3cret': x\n",
            "telemetry.headers",
            "a header name must be lower case",
        ),
        (
            f"postgres:\n  url: {URL}\ntelemetry:\n  headers:\n"
            '    api-key: "s3cret\\r\\nx-evil: 1"\n',
            "telemetry.headers",
            "the value of header 'api-key' must be printable ASCII on one line",
        ),
    ],
)
def test_errors_name_the_key_and_the_file(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert raised.value.key == key
    assert message in raised.value.message
    assert raised.value.source == str(path)
    assert key in str(raised.value) and str(path) in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_a_sink_s_apply_timeout_overrides_the_relay_s(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"postgres:\n  url: {URL}\nrelay:\n  apply_timeout_seconds: 12\n"
        "sinks:\n  slow:\n    type: memory\n    apply_timeout_seconds: 90\n"
        "  quick:\n    type: memory\n",
    )
    settings = load_settings(path)
    assert settings.relay.apply_timeout_seconds == 12
    assert settings.sinks["slow"].apply_timeout_seconds == 90
    assert settings.sinks["quick"].apply_timeout_seconds is None


def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, f"postgres:\n  url: {URL}\n")
    monkeypatch.setenv("FANOUT_ORDERS_MAX_ITEMS", "perhaps")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert raised.value.key == "orders.max_items"
    assert raised.value.source == "environment variable FANOUT_ORDERS_MAX_ITEMS"


@pytest.mark.parametrize(
    ("text", "message"),
    [("postgres: [unclosed\n", "not valid YAML at line"), ("- a\n- b\n", "must be a mapping")],
)
def test_malformed_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(path)
    assert raised.value.source == str(path)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.yaml")


def test_the_password_never_shows_in_printed_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, f"postgres:\n  url: {URL}\n"))
    for text in (
        str(settings),
        repr(settings),
        settings.model_dump_json(),
        str(settings.postgres.url),
    ):
        assert "s3cret" not in text
    assert str(settings.postgres.url) == "postgresql://app:***@db.internal:5432/orders"


def test_references_to_environment_variables_are_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "postgres:\n"
        "  url: postgresql://app:${DB_PASSWORD}@${DB_HOST:-localhost}/orders\n"
        "sinks:\n"
        "  cache:\n"
        "    type: redis\n"
        "    url: 'redis://:${REDIS_PASSWORD:-}@cache/0'\n"
        "    key_prefix: '$${x}'\n",
    )
    monkeypatch.setenv("DB_PASSWORD", "pa55")
    monkeypatch.delenv("DB_HOST", raising=False)
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)

    settings = load_settings(path)

    assert settings.postgres.url.get_secret_value() == "postgresql://app:pa55@localhost/orders"
    cache = settings.sinks["cache"]
    assert cache.type == "redis"
    assert cache.url.get_secret_value() == "redis://:@cache/0"
    assert cache.key_prefix == "${x}"


def test_an_unset_variable_names_the_key_the_variable_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "postgres:\n  url: postgresql://app:${DB_PASSWORD}@db/orders\n")
    monkeypatch.delenv("DB_PASSWORD", raising=False)

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    assert raised.value.key == "postgres.url"
    assert "DB_PASSWORD is not set" in raised.value.message
    assert raised.value.source == str(path)


def test_payment_is_on_by_default_and_off_with_null(tmp_path: Path) -> None:
    assert (
        load_settings(write(tmp_path, f"postgres:\n  url: {URL}\n")).orders
        == load_settings(
            write(tmp_path, f"postgres:\n  url: {URL}\norders:\n  payment_timeout_seconds: 900\n")
        ).orders
    )
    off = write(tmp_path, f"postgres:\n  url: {URL}\norders:\n  payment_timeout_seconds: null\n")
    assert load_settings(off).orders.payment_timeout_seconds is None


def test_webhook_secrets_are_one_or_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = "a-secret-of-20-chars"
    two = "another-secret-of-24-chs"
    single = write(tmp_path, f"postgres:\n  url: {URL}\npayments:\n  webhook_secret: {one}\n")
    assert [s.get_secret_value() for s in load_settings(single).payments.webhook_secret] == [one]
    monkeypatch.setenv("FANOUT_PAYMENTS_WEBHOOK_SECRET", f"{two}, {one}")
    secrets = load_settings(single).payments.webhook_secret
    assert [s.get_secret_value() for s in secrets] == [two, one]
    assert one not in repr(secrets)
