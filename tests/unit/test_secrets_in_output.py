"""No secret in what the ``fanout`` command prints or logs, whatever form its URL takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from support.servers import unused_port

SECRETS = [f"Sekret{number}Value" for number in range(7)]


def fanout(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_hides_the_secret_of_every_url_form(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "postgres": {
                    "url": f"postgresql://u@db.example:5432/orders?password={SECRETS[0]}",
                    "replicas": [
                        f"postgresql://u:{SECRETS[1]}@r1.example:5432,r2.example:5433/orders",
                        f"postgresql://u@[::1]:5434/orders?sslpassword={SECRETS[2]}",
                    ],
                },
                "sinks": {
                    "cache": {"type": "redis", "url": f"redis://:{SECRETS[3]}@redis.example:6379"},
                    "metrics": {
                        "type": "influxdb",
                        "url": f"http://influx.example:8086/?u=admin&p={SECRETS[4]}",
                    },
                    "events": {
                        "type": "kafka",
                        # A Kafka URL with credentials is refused (the sink has no auth).
                        "url": "kafka://b1.example:9092,b2.example:9092",
                    },
                    "documents": {
                        "type": "mongodb",
                        "url": f"mongodb://u:{SECRETS[6]}@mongo.example:27017/?authSource=admin",
                    },
                },
            }
        )
    )
    result = fanout(config, "config")
    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    for address in ("db.example:5432/orders", "r2.example:5433", "[::1]:5434", "b2.example:9092"):
        assert address in result.stdout


def test_an_unreachable_database_is_reported_without_its_password(tmp_path: Path) -> None:
    port = unused_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {"postgres": {"url": f"postgresql://u@127.0.0.1:{port}/orders?password={SECRETS[0]}"}}
        )
    )
    result = fanout(config, "migrate")
    assert result.returncode == 1
    assert f"127.0.0.1:{port}/orders" in result.stderr
    assert SECRETS[0] not in result.stdout + result.stderr


def test_log_lines_are_written_without_secrets() -> None:
    program = (
        "import logging\n"
        "from gateway.cli.app import configure_logging\n"
        "configure_logging('INFO')\n"
        "logging.getLogger('client').warning(\n"
        f"    'failed: %s', 'http://i.example:8086/write?db=o&u=a&p={SECRETS[4]}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert "http://i.example:8086/write?db=o&u=a&p=***" in result.stderr
    assert SECRETS[4] not in result.stderr
