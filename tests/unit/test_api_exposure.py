"""Serving the API beyond loopback needs a key, or an explicit opt-out: no I/O but the CLI's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.api.exposure import check_exposure, is_loopback
from gateway.configuration.settings import ApiSettings
from gateway.errors import ConfigError
from support.servers import unused_port

KEY = "an-api-key-0123456789"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.10.20.30", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("fe80::1", False),
        ("api.example", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_public_address_without_a_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as refused:
        check_exposure(ApiSettings(host="0.0.0.0"), None, Path("gateway.yaml"))
    assert refused.value.key == "api.key"
    assert "0.0.0.0" in str(refused.value) and "api.allow_unauthenticated" in str(refused.value)
    assert refused.value.source == "gateway.yaml"


@pytest.mark.parametrize(
    ("settings", "host"),
    [
        (ApiSettings(), None),
        (ApiSettings(host="0.0.0.0"), "127.0.0.1"),
        (ApiSettings(host="0.0.0.0", key=KEY), None),
        (ApiSettings(host="0.0.0.0", allow_unauthenticated=True), None),
    ],
)
def test_loopback_a_key_or_the_opt_out_may_serve(settings: ApiSettings, host: str | None) -> None:
    check_exposure(settings, host, None)


def test_fanout_serve_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    url = f"postgresql://u@127.0.0.1:{unused_port()}/db"
    config.write_text(yaml.safe_dump({"postgres": {"url": url}}))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "api.key" in result.stderr and str(config) in result.stderr
