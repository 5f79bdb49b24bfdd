#!/usr/bin/env bash
# Starts the compose stack for real and checks it end to end, on a machine with no Docker
# engine and no image registry (such as CI's):
#
# 1. installs and configures Debian's podman (runc, lowered ulimits, cgroupfs), builds Docker
#    Compose v5 (scripts/compose-v5.sh), and serves podman's Docker-compatible API on a socket
#    of its own;
# 2. builds, under the exact names docker-compose.yml and the Dockerfile use, local stand-ins
#    of the official images (scripts/compose/stand-ins/, on a Debian 12 base made with
#    debootstrap), from Debian's packages and what scripts/services.sh has already built or
#    fetched (FerretDB, InfluxDB, Elasticsearch, Kafka's jars);
# 3. validates the file with `docker compose config`, runs `docker compose up --build` with
#    .env.example (unchanged docker-compose.yml and Dockerfile; the image labelled with
#    pyproject.toml's version), running every container's health check every few seconds
#    (nothing else does without systemd), and waits for every service to be healthy and migrate
#    to finish;
# 4. drives a few thousand orders through the API with the loadtest service, checks that the
#    load test left every container of the running stack as it was (same container, same start
#    time), runs `fanout verify` inside the stack, and checks that both relay replicas held
#    leases;
# 5. takes the stack down with its volumes and stops what it started.
#
# On failure it prints the logs of every service that is not healthy (or did not exit 0).
#
#   scripts/compose-check.sh            (as root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${FANOUT_COMPOSE_CHECK_DIR:-/var/tmp/fanout-compose-check}"
SERVICES_DIR="${FANOUT_SERVICES_DIR:-$ROOT/.services}"
STAND_INS="$ROOT/scripts/compose/stand-ins"
BASE_IMAGE=fanout-check/debian:bookworm
JRE_IMAGE=fanout-check/jre:17
CONTAINERS_CONF=/etc/containers/containers.conf
CONF_MARK="# written by fanout's scripts/compose-check.sh"
# 1,000 orders: enough to move both relays' partitions and every store; the MongoDB stand-in
# (FerretDB on SQLite) drains slowly, and most of this stage's time was its backlog.
LOAD_RATE=25
LOAD_SECONDS=40
HEALTH_DRIVER=""
PROJECT=""

log() { printf '[compose-check] %s\n' "$*" >&2; }
die() { printf '[compose-check] error: %s\n' "$*" >&2; exit 1; }

setting() { sed -n "s/^$1=//p" "$ROOT/scripts/services.sh"; }

# --- the engine ----------------------------------------------------------------

install_engine() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # crun fails on this kind of host's hybrid cgroups and on higher limits; there is no
    # systemd to manage cgroups or keep an event journal.
    if [ ! -f "$CONTAINERS_CONF" ] || grep -qF "$CONF_MARK" "$CONTAINERS_CONF"; then
        mkdir -p "$(dirname "$CONTAINERS_CONF")"
        cat >"$CONTAINERS_CONF" <<CONF
$CONF_MARK
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    else
        log "keeping the existing $CONTAINERS_CONF"
    fi
}

start_engine() {
    mkdir -p "$WORK"
    rm -f "$WORK/podman.sock"
    podman system service --time=0 "unix://$WORK/podman.sock" >"$WORK/podman-service.log" 2>&1 &
    echo $! >"$WORK/podman-service.pid"
    for _ in $(seq 100); do
        [ -S "$WORK/podman.sock" ] && break
        sleep 0.1
    done
    [ -S "$WORK/podman.sock" ] || die "podman's API service did not start ($WORK/podman-service.log)"
    export DOCKER_HOST="unix://$WORK/podman.sock"
}

stop_engine() {
    if [ -f "$WORK/podman-service.pid" ]; then
        kill "$(cat "$WORK/podman-service.pid")" 2>/dev/null || true
        rm -f "$WORK/podman-service.pid" "$WORK/podman.sock"
    fi
}

# --- images ----------------------------------------------------------------------

debian_mirror() {
    local uri
    uri="$(sed -n 's/^URIs: *\(http[^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v security | head -1)"
    echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
    if podman image exists "$BASE_IMAGE"; then return; fi
    log "making the Debian 12 base image with debootstrap (once)"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" "$(debian_mirror)" >"$WORK/debootstrap.log" \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
}

# The build context of a stand-in: its directory, plus what it is built from.
context() {
    local name="$1" directory="$WORK/context/$1"
    rm -rf "$directory"
    mkdir -p "$WORK/context"
    cp -r "$STAND_INS/$name" "$directory"
    echo "$directory"
}

require_artifact() {
    [ -e "$1" ] || die "$1 is missing: run scripts/services.sh up $2 first"
}

kafka_libs() {
    local directory="$1" version
    version="$(setting KAFKA_VERSION)"
    mkdir -p "$directory/libs"
    cat >"$directory/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fanout.check</groupId>
  <artifactId>kafka-stand-in</artifactId>
  <version>$version</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
    mvn -B -q -f "$directory/pom.xml" dependency:copy-dependencies \
        "-DoutputDirectory=$directory/libs" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
    rm "$directory/pom.xml"
}

# Image name -> stand-in directory, and how its context is completed.
build_stand_ins() {
    local python_image elasticsearch_image kafka_image directory
    python_image="$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$ROOT/Dockerfile" | head -1)"
    elasticsearch_image="$(sed -n 's/^ *image: \(.*elasticsearch.*\)$/\1/p' "$ROOT/docker-compose.yml")"
    kafka_image="$(sed -n 's/^ *image: \(apache\/kafka.*\)$/\1/p' "$ROOT/docker-compose.yml")"

    build "$JRE_IMAGE" "$(context jre)"

    directory="$(context python)"
    cp /etc/ssl/certs/ca-certificates.crt "$directory/"
    build "$python_image" "$directory"

    build postgres:16 "$(context postgres)"
    build redis:7 "$(context redis)"

    directory="$(context mongo)"
    require_artifact "$SERVICES_DIR/bin/ferretdb-$(setting FERRETDB_VERSION)" mongodb
    cp "$SERVICES_DIR/bin/ferretdb-$(setting FERRETDB_VERSION)" "$directory/ferretdb"
    build mongo:7 "$directory"

    directory="$(context influxdb)"
    require_artifact "$SERVICES_DIR/bin/influxd-$(setting INFLUXDB_VERSION)" influxdb
    cp "$SERVICES_DIR/bin/influxd-$(setting INFLUXDB_VERSION)" "$directory/influxd"
    build influxdb:2.7 "$directory"

    directory="$(context elasticsearch)"
    local es_home="$SERVICES_DIR/elasticsearch/home-$(setting ELASTICSEARCH_VERSION)"
    require_artifact "$es_home/bin/elasticsearch" elasticsearch
    [ "${elasticsearch_image##*:}" = "$(setting ELASTICSEARCH_VERSION)" ] \
        || die "docker-compose.yml runs Elasticsearch ${elasticsearch_image##*:}, services.sh $(setting ELASTICSEARCH_VERSION)"
    cp -r "$es_home" "$directory/elasticsearch"
    build "$elasticsearch_image" "$directory"

    directory="$(context kafka)"
    [ "${kafka_image##*:}" = "$(setting KAFKA_VERSION)" ] \
        || die "docker-compose.yml runs Kafka ${kafka_image##*:}, services.sh $(setting KAFKA_VERSION)"
    kafka_libs "$directory"
    build "$kafka_image" "$directory"
    rm -rf "$WORK/context"
}

# Builds a stand-in under the name the compose file uses, fully qualified as Docker would
# resolve it (python:3.11 is docker.io/library/python:3.11), so no registry is asked.
build() {
    local name="$1" directory="$2" qualified
    qualified="$(qualify "$name")"
    grep -qF "$name" "$ROOT/docker-compose.yml" "$ROOT/Dockerfile" || [ "$name" = "$JRE_IMAGE" ] \
        || die "neither docker-compose.yml nor the Dockerfile uses $name"
    log "building $qualified"
    podman build --quiet --network host --file "$directory/Containerfile" --tag "$qualified" \
        "$directory" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; die "building $name failed"; }
}

qualify() {
    local name="$1"
    case "$name" in
        fanout-check/*) echo "localhost/$name" ;;
        */*/*) echo "$name" ;;
        */*) echo "docker.io/$name" ;;
        *) echo "docker.io/library/$name" ;;
    esac
}

# --- the stack ---------------------------------------------------------------------

# The Compose command: main puts the binary scripts/compose-v5.sh builds in front.
COMPOSE_OPTIONS=(--project-directory "$ROOT" --env-file "$ROOT/.env.example"
    -f "$ROOT/docker-compose.yml")
COMPOSE=(docker compose "${COMPOSE_OPTIONS[@]}")

compose() { "${COMPOSE[@]}" "$@"; }

# Without systemd, podman runs no health check by itself.
drive_health_checks() {
    while true; do
        local id
        for id in $(podman ps --quiet --filter "label=com.docker.compose.project=$PROJECT"); do
            podman healthcheck run "$id" >/dev/null 2>&1 || true
        done
        sleep 3
    done
}

health_of() {
    podman inspect --format '{{if .State.Healthcheck}}{{.State.Healthcheck.Status}}{{end}}' "$1"
}

# Every long-running service's containers healthy, and migrate exited 0.
stack_ready() {
    local id name state health
    for id in $(podman ps --all --quiet --filter "label=com.docker.compose.project=$PROJECT"); do
        name="$(podman inspect --format '{{index .Config.Labels "com.docker.compose.service"}}' "$id")"
        state="$(podman inspect --format '{{.State.Status}}/{{.State.ExitCode}}' "$id")"
        health="$(health_of "$id")"
        case "$name" in
            migrate) [ "$state" = exited/0 ] || return 1 ;;
            loadtest) ;;
            *) [ "$health" = healthy ] || return 1 ;;
        esac
    done
}

print_failing_logs() {
    local id name state health
    log "containers:"
    podman ps --all --filter "label=com.docker.compose.project=$PROJECT" \
        --format '  {{.Names}}  {{.Status}}' >&2 || true
    for id in $(podman ps --all --quiet --filter "label=com.docker.compose.project=$PROJECT"); do
        name="$(podman inspect --format '{{.Name}}' "$id")"
        state="$(podman inspect --format '{{.State.Status}}/{{.State.ExitCode}}' "$id")"
        health="$(health_of "$id")"
        if [ "$health" = healthy ] || [ "$state" = exited/0 ]; then continue; fi
        log "logs of $name ($state${health:+, $health}):"
        podman logs --tail 80 "$id" >&2 2>&1 || true
    done
}

run_stack() {
    log "docker compose up --build"
    timeout 1200 "${COMPOSE[@]}" up --build --detach 2>&1 | tail -40 >&2 || return 1
    check_image_version || return 1
    log "waiting for every service to be healthy"
    local deadline=$((SECONDS + 600))
    until stack_ready; do
        [ $SECONDS -lt $deadline ] || { log "the stack did not become healthy in time"; return 1; }
        sleep 3
    done
    log "the stack is up: driving $((LOAD_RATE * LOAD_SECONDS)) orders through the API"
    local before
    before="$(stack_containers)"
    timeout 900 "${COMPOSE[@]}" --profile loadtest run --rm loadtest \
        loadtest --via http --url http://api:8000 --rate "$LOAD_RATE" \
        --duration "$LOAD_SECONDS" --drain-timeout 300 --allow-remote >&2 || return 1
    unchanged_by_load_test "$before" "$(stack_containers)" || return 1
    log "fanout verify inside the stack"
    timeout 600 "${COMPOSE[@]}" exec -T api fanout verify >&2 || return 1
    local owners
    owners="$(compose exec -T postgres sh -c \
        'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Atc "SELECT count(DISTINCT owner) FROM relay_positions WHERE owner IS NOT NULL"')"
    log "relays holding leases: $owners"
    [ "$owners" = 2 ] || { log "expected both relay replicas to hold leases"; return 1; }
}

# Every container of the stack but one-off ones (`run`), one a line: service, name, id and
# start time; a container recreated or restarted shows as a changed line.
stack_containers() {
    local id
    for id in $(podman ps --all --quiet --filter "label=com.docker.compose.project=$PROJECT"); do
        podman inspect --format \
            '{{index .Config.Labels "com.docker.compose.oneoff"}} {{index .Config.Labels "com.docker.compose.service"}} {{.Name}} {{.Id}} {{.State.StartedAt}}' \
            "$id"
    done | sed -n 's/^False //p' | sort
}

# Whether the stack's containers after the load test ($2) are those before it ($1): the same
# containers, started at the same times; says which differ otherwise.
unchanged_by_load_test() {
    local before="$1" after="$2"
    [ -n "$before" ] || { log "no container of the stack found before the load test"; return 1; }
    if [ "$before" != "$after" ]; then
        log "the load test recreated or restarted containers of the running stack:"
        diff <(echo "$before") <(echo "$after") | sed -n 's/^\([<>]\)/  \1/p' >&2
        return 1
    fi
    log "the load test left the stack's $(echo "$before" | wc -l) containers as they were"
}

# The gateway's image carries pyproject.toml's version in its OCI labels.
check_image_version() {
    local image labelled
    image="$(sed -n 's/^ *image: \(fanout-gateway:.*\)$/\1/p' "$ROOT/docker-compose.yml" | head -1)"
    labelled="$(podman image inspect --format \
        '{{index .Labels "org.opencontainers.image.version"}}' "$(qualify "$image")")"
    log "$image is labelled version $labelled"
    [ "$labelled" = "$FANOUT_VERSION" ] || { log "expected version $FANOUT_VERSION"; return 1; }
}

# The version pyproject.toml declares.
project_version() {
    python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$ROOT/pyproject.toml"
}

take_down() {
    compose --profile loadtest down --volumes --remove-orphans >/dev/null 2>&1 || true
    podman network rm --force "${PROJECT}_default" >/dev/null 2>&1 || true
}

main() {
    [ "$(id -u)" -eq 0 ] || die "run as root (podman runs rootful here)"
    install_engine
    COMPOSE=("$(bash "$ROOT/scripts/compose-v5.sh")" "${COMPOSE_OPTIONS[@]}")
    log "validating docker-compose.yml with $("${COMPOSE[0]}" version)"
    compose config --quiet || die "docker compose config refused docker-compose.yml"
    PROJECT="$(compose config --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')"
    # The Dockerfile's build argument for the image's version label.
    FANOUT_VERSION="$(project_version)"
    export FANOUT_VERSION
    start_engine
    cleanup() {
        [ -z "$HEALTH_DRIVER" ] || kill "$HEALTH_DRIVER" 2>/dev/null || true
        take_down
        stop_engine
    }
    trap cleanup EXIT
    trap 'exit 143' TERM INT
    build_base
    build_stand_ins
    take_down
    drive_health_checks &
    HEALTH_DRIVER=$!
    if ! run_stack; then
        print_failing_logs
        die "the compose stack check failed"
    fi
    log "the compose stack came up healthy, took the load, and every store matches PostgreSQL"
}

# Sourced (by the tests), it only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
