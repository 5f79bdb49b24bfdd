"""The suite's environment: the gateway's own settings removed, where the servers run kept."""

from __future__ import annotations

from tests.environment import remove_gateway_settings


def test_gateway_settings_go_and_the_servers_whereabouts_stay() -> None:
    environ = {
        "FANOUT_API_KEY": "secret",
        "FANOUT_POSTGRES__URL": "postgresql://elsewhere/db",
        "FANOUT_CONFIG": "config/stores.yaml",
        "FANOUT_TEST_POSTGRES_URL": "postgresql://127.0.0.1:55432/postgres",
        "FANOUT_SERVICES_DIR": "/srv/fanout-services",
        "FANOUT_SERVICES_POSTGRES_PORT": "45432",
        "FANOUT_SERVICES_JAVA_HOME": "/opt/jdk17",
        "PATH": "/usr/bin",
    }

    remove_gateway_settings(environ)

    assert environ == {
        "FANOUT_TEST_POSTGRES_URL": "postgresql://127.0.0.1:55432/postgres",
        "FANOUT_SERVICES_DIR": "/srv/fanout-services",
        "FANOUT_SERVICES_POSTGRES_PORT": "45432",
        "FANOUT_SERVICES_JAVA_HOME": "/opt/jdk17",
        "PATH": "/usr/bin",
    }
