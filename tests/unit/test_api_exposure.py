"""Serving the API beyond loopback needs a key, or an explicit opt-out; without a key only this
machine's names are served: no I/O but the CLI's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.api.exposure import check_exposure, host_allowed, is_loopback
from gateway.configuration.settings import ApiSettings, Settings
from gateway.errors import ConfigError
from support.servers import unused_port

KEY = "an-api-key-0123456789"
# Nothing listens there: the API starts anyway and keeps connecting in the background.
UNREACHABLE = "postgresql://nobody@127.0.0.1:9/none"
REBOUND = "http://rebind.attacker.example:8000"


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


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8000", True),
        ("127.0.0.1", True),
        ("127.8.9.10:8000", True),
        ("localhost:8000", True),
        ("LOCALHOST", True),
        ("[::1]:8000", True),
        ("gateway.internal:8000", True),  # api.host
        ("rebind.attacker.example:8000", False),
        ("127.0.0.1.attacker.example", False),
        ("[::1", False),
        ("", False),
        (None, False),
    ],
)
def test_without_a_key_only_this_machines_names_and_api_host_are_served(
    host: str | None, expected: bool
) -> None:
    assert host_allowed(host, "gateway.internal") is expected


def healthz(api: dict[str, object], base_url: str) -> tuple[int, str]:
    """The answer of ``/healthz`` asked at ``base_url`` of an app with ``api`` settings."""
    settings = Settings.model_validate({"postgres": {"url": UNREACHABLE}, "api": api})
    with TestClient(create_app(settings), base_url=base_url) as client:
        response = client.get("/healthz")
    return response.status_code, response.text


def test_without_a_key_a_request_under_another_host_name_is_refused() -> None:
    status, text = healthz({}, REBOUND)

    assert status == 403
    assert "host-not-allowed" in text and "rebind.attacker.example:8000" in text


@pytest.mark.parametrize(
    ("api", "base_url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({}, "http://localhost:8000"),
        ({"host": "::1"}, "http://[::1]:8000"),
        ({"key": KEY}, REBOUND),  # a key guards it instead
        ({"allow_unauthenticated": True}, REBOUND),  # served beyond loopback by choice
    ],
)
def test_this_machines_names_a_key_or_the_opt_out_are_served(
    api: dict[str, object], base_url: str
) -> None:
    assert healthz(api, base_url)[0] == 200
