"""The compose stack, checked without a Docker engine: structure, health, wiring, settings.

CI machines have no Docker engine, so nothing is built or started here. These tests parse
``docker-compose.yml`` and the ``Dockerfile`` and load ``config/compose.yaml`` with the
gateway's own settings model, using the values of ``.env.example``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from gateway.api.exposure import check_exposure
from gateway.cli.app import app
from gateway.configuration.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GATEWAY_CONFIG = ROOT / "config" / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

STORES = {"postgres", "postgres-replica", "mongo", "redis", "elasticsearch", "influxdb", "kafka"}
GATEWAY_SERVICES = {"migrate", "api", "relay", "loadtest"}
ONE_SHOT = {"migrate", "loadtest"}
# Compose variable syntax: $$, ${NAME}, ${NAME:-default}, ${NAME:?error}.
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """What docker compose makes of ``value`` with ``variables`` (its .env)."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, operator, argument = match.groups()
            if variables.get(name):
                return variables[name]
            if operator == "-":
                return argument
            raise AssertionError(f"compose needs ${{{name}}}, which .env.example does not set")

        return COMPOSE_VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {key: substitute(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, variables) for item in value]
    return value


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as docker compose sees it with .env.example copied to .env."""
    resolved: dict[str, Any] = substitute(raw, env_example())
    return resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def image_tag(service: dict[str, Any]) -> str:
    image: str = service["image"]
    return image.rsplit(":", 1)[1]


def test_every_service_of_the_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == STORES | GATEWAY_SERVICES


def test_store_images_have_the_pinned_major_versions(services: dict[str, dict[str, Any]]) -> None:
    ci_elasticsearch = re.search(
        r"^ELASTICSEARCH_VERSION=(\S+)$", (ROOT / "scripts" / "services.sh").read_text(), re.M
    )
    assert ci_elasticsearch is not None
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    client_pin = next(d for d in project["dependencies"] if d.startswith("elasticsearch"))
    client_major = int(re.search(r"<(\d+)", client_pin).group(1)) - 1  # type: ignore[union-attr]

    assert image_tag(services["postgres"]).split(".")[0] == "16"
    assert services["postgres-replica"]["image"] == services["postgres"]["image"]
    assert image_tag(services["mongo"]).split(".")[0] == "7"
    assert image_tag(services["redis"]).split(".")[0] == "7"
    assert image_tag(services["influxdb"]).split(".")[0] == "2"
    ci_kafka = re.search(
        r"^KAFKA_VERSION=(\S+)$", (ROOT / "scripts" / "services.sh").read_text(), re.M
    )
    assert ci_kafka is not None and image_tag(services["kafka"]) == ci_kafka.group(1)
    elasticsearch = image_tag(services["elasticsearch"])
    assert elasticsearch.split(".")[0] == ci_elasticsearch.group(1).split(".")[0]
    assert int(elasticsearch.split(".")[0]) == client_major


def test_the_file_names_its_project(raw: dict[str, Any]) -> None:
    # COMPOSE_PROJECT_NAME in .env would override the name the file gives.
    assert raw["name"] == "fanout"
    assert "COMPOSE_PROJECT_NAME" not in env_example()


def test_gateway_services_build_this_repository(services: dict[str, dict[str, Any]]) -> None:
    for name in GATEWAY_SERVICES:
        assert services[name]["build"]["context"] == ".", name
    for name in STORES:
        assert "image" in services[name] and "build" not in services[name], name
    assert DOCKERFILE.exists()


def test_the_image_is_labelled_with_the_version_it_is_given(raw: dict[str, Any]) -> None:
    for name in GATEWAY_SERVICES:
        assert raw["services"][name]["build"]["args"] == {
            "FANOUT_VERSION": "${FANOUT_VERSION:-unknown}"
        }, name
    dockerfile = DOCKERFILE.read_text()
    final_stage = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert "ARG FANOUT_VERSION" in final_stage
    assert 'org.opencontainers.image.version="$FANOUT_VERSION"' in final_stage
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in final_stage


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            # A one-shot command has nothing to probe: dependants wait for it to complete.
            assert check.get("disable") is True and service["restart"] == "no", name
        else:
            assert check.get("test"), f"{name} has no health check"
            assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_dependencies_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, (name, target)
    assert set(services["migrate"]["depends_on"]) == {"postgres"}
    assert set(services["api"]["depends_on"]) == STORES | {"migrate"}
    # The relay writes and reads the primary only.
    assert set(services["relay"]["depends_on"]) == STORES - {"postgres-replica"} | {"migrate"}
    assert set(services["postgres-replica"]["depends_on"]) == {"postgres"}
    # `run` would start (and may recreate) what the load test depends on: it runs against the
    # stack as it is.
    assert "depends_on" not in services["loadtest"]


def test_two_relays_and_a_loadtest_profile(services: dict[str, dict[str, Any]]) -> None:
    assert services["relay"]["deploy"]["replicas"] == 2
    assert "ports" not in services["relay"]  # replicas cannot share a host port
    assert services["loadtest"]["profiles"] == ["loadtest"]
    assert all("profiles" not in services[name] for name in set(services) - {"loadtest"})


def test_data_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name in STORES:
        mounts = compose["services"][name]["volumes"]
        assert mounts, f"{name} keeps no data in a volume"
        for mount in mounts:
            source = mount.split(":", 1)[0]
            if source.startswith("./scripts/compose/"):
                # The stack's own start-up scripts, read-only: code, not data.
                assert mount.endswith(":ro") and (ROOT / source).is_file(), mount
                continue
            assert not source.startswith((".", "/")), f"{name} mounts a host path"
            used.add(source)
    assert used == declared


def test_ports_are_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_no_secret_is_written_into_the_compose_file(raw: dict[str, Any]) -> None:
    for name, service in raw["services"].items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if re.search(r"PASSWORD|TOKEN|KEY|AUTH", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), (name, key)


def _is_setting(variable: str) -> bool:
    rest = variable.removeprefix(ENV_PREFIX).lower()
    section, _, key = rest.partition("_")
    field = Settings.model_fields.get(section)
    if field is None or field.annotation is None:
        return False
    model = field.annotation
    return hasattr(model, "model_fields") and key in model.model_fields


def test_gateway_environment_names_real_settings(services: dict[str, dict[str, Any]]) -> None:
    values = yaml.safe_dump(yaml.safe_load(GATEWAY_CONFIG.read_text()))  # without comments
    references = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", values))
    for name in GATEWAY_SERVICES:
        environment = services[name]["environment"]
        for variable in environment:
            if variable.startswith(ENV_PREFIX) and variable != "FANOUT_CONFIG":
                assert _is_setting(variable), f"{name}: {variable} is not a gateway setting"
        assert environment["FANOUT_CONFIG"] == "/app/config/compose.yaml"
        assert references <= set(environment), references - set(environment)


def test_the_stack_configuration_loads_with_the_gateway_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in services["api"]["environment"].items():
        monkeypatch.setenv(variable, str(value))

    settings = load_settings(GATEWAY_CONFIG)

    secrets = env_example()
    assert settings.postgres.url.get_secret_value() == (
        f"postgresql://{secrets['POSTGRES_USER']}:{secrets['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{secrets['POSTGRES_DB']}"
    )
    assert {name: sink.type for name, sink in settings.sinks.items()} == {
        "mongodb": "mongodb",
        "redis": "redis",
        "elasticsearch": "elasticsearch",
        "influxdb": "influxdb",
        "kafka": "kafka",
    }
    assert settings.api.key is not None
    assert settings.api.key.get_secret_value() == secrets["FANOUT_API_KEY"]
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 8000)
    check_exposure(settings.api, None, GATEWAY_CONFIG)  # the stack's API may start
    influx = settings.sinks["influxdb"]
    assert influx.type == "influxdb" and influx.token is not None
    assert influx.token.get_secret_value() == secrets["INFLUXDB_TOKEN"]
    assert (influx.api, influx.bucket, influx.create_database) == ("v2", "orders", False)


def test_gateway_commands_exist_in_the_cli(services: dict[str, dict[str, Any]]) -> None:
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    for name in GATEWAY_SERVICES:
        assert services[name]["command"][0] in commands, name


def test_the_image_is_multi_stage_non_root_and_without_secrets() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2 and all("slim" in stage for stage in stages)
    [user] = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user not in {"0", "root"}
    assert "COPY --from=build" in text
    assert not re.search(r"^(ENV|ARG)\s.*(PASSWORD|TOKEN|SECRET|API_KEY)", text, re.M)
    assert re.search(r'^ENTRYPOINT \["fanout"\]', text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv", ".services"} <= set(ignored)


def test_elasticsearch_places_shards_while_gigabytes_are_free(
    services: dict[str, dict[str, Any]],
) -> None:
    """Disk watermarks as free space: the default shares (90 %) leave a large host disk with
    tens of gigabytes free refusing to place the orders index."""
    environment = services["elasticsearch"]["environment"]
    free = {
        level: environment[f"cluster.routing.allocation.disk.watermark.{level}"]
        for level in ("low", "high", "flood_stage")
    }
    assert all(re.fullmatch(r"\d+(mb|gb)", value) for value in free.values()), free
