#!/usr/bin/env bash
# Installs (when missing) and runs the real servers the gateway is tested against,
# on 127.0.0.1 only, with their data under $FANOUT_SERVICES_DIR (default: .services/).
#
#   scripts/services.sh up [SERVICE...]     install what is missing, start, wait, print URLs
#   scripts/services.sh down [SERVICE...]   stop what this script started
#   scripts/services.sh status              say what runs
#   scripts/services.sh env                 print the FANOUT_TEST_*_URL lines
#
# Services: postgres, redis. Ports can be moved with FANOUT_SERVICES_<NAME>_PORT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FANOUT_SERVICES_DIR:-$ROOT/.services}"
PG_PORT="${FANOUT_SERVICES_POSTGRES_PORT:-55432}"
REDIS_PORT="${FANOUT_SERVICES_REDIS_PORT:-56379}"
PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_USER=fanout
PG_PASSWORD=fanout
ALL_SERVICES=(postgres redis)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ "$apt_updated" -eq 0 ]; then
        $sudo apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL refuses to run as root, so as root the server runs as the 'postgres' user.
as_pg_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

wait_until() {
    local what="$1" tries="$2"
    shift 2
    for _ in $(seq "$tries"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what did not answer in time"
}

pidfile_alive() {
    [ -f "$1" ] && kill -0 "$(head -1 "$1")" 2>/dev/null
}

# Fails when something else already listens on the port we are about to use.
require_free_port() {
    local service="$1" port="$2"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is taken by a server this script did not start; stop it or set FANOUT_SERVICES_${service^^}_PORT"
    fi
}

# --- postgres ---------------------------------------------------------------

postgres_url() { echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"; }
postgres_running() { pidfile_alive "$DIR/postgres/data/postmaster.pid"; }

postgres_up() {
    [ -x "$PG_BIN/pg_ctl" ] || { log "installing postgresql-$PG_MAJOR"; apt_install "postgresql-$PG_MAJOR" postgresql-contrib; }
    local data="$DIR/postgres/data"
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initialising a cluster in $data"
        mkdir -p "$DIR/postgres"
        [ "$(id -u)" -ne 0 ] || chown postgres: "$DIR/postgres"
        local pwfile="$DIR/postgres/pwfile"
        as_pg_owner bash -c "umask 077; echo '$PG_PASSWORD' > '$pwfile'"
        as_pg_owner "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" \
            --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
        cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/postgres'
max_connections = 200
shared_buffers = 256MB
shared_preload_libraries = 'pg_stat_statements'
fsync = on
CONF
    fi
    if postgres_running; then
        log "postgres already running on 127.0.0.1:$PG_PORT"
    else
        require_free_port postgres "$PG_PORT"
        log "starting postgres on 127.0.0.1:$PG_PORT"
        if ! as_pg_owner "$PG_BIN/pg_ctl" -D "$data" -l "$DIR/postgres/server.log" \
                -o "-p $PG_PORT -c track_commit_timestamp=on" -w -t 60 start >/dev/null; then
            tail -n 5 "$DIR/postgres/server.log" >&2 || true
            die "postgres did not start (log: $DIR/postgres/server.log)"
        fi
    fi
    wait_until postgres 60 "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
}

postgres_down() {
    if postgres_running; then
        log "stopping postgres"
        as_pg_owner "$PG_BIN/pg_ctl" -D "$DIR/postgres/data" -m fast -w stop >/dev/null
    fi
}

# --- redis ------------------------------------------------------------------

redis_url() { echo "redis://127.0.0.1:$REDIS_PORT/0"; }
redis_running() { pidfile_alive "$DIR/redis/redis.pid"; }

redis_up() {
    command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server redis-tools; }
    mkdir -p "$DIR/redis"
    if redis_running; then
        log "redis already running on 127.0.0.1:$REDIS_PORT"
    else
        require_free_port redis "$REDIS_PORT"
        log "starting redis on 127.0.0.1:$REDIS_PORT"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
            --daemonize yes --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/server.log" \
            --save "" --appendonly no
    fi
    wait_until redis 60 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
}

redis_down() {
    if redis_running; then
        log "stopping redis"
        kill "$(head -1 "$DIR/redis/redis.pid")"
        rm -f "$DIR/redis/redis.pid"
    fi
}

# --- commands ---------------------------------------------------------------

print_env() {
    local service
    for service in "$@"; do
        if "${service}_running"; then
            printf 'FANOUT_TEST_%s_URL=%s\n' "${service^^}" "$("${service}_url")"
        fi
    done
}

check_services() {
    local service
    for service in "$@"; do
        case " ${ALL_SERVICES[*]} " in
            *" $service "*) ;;
            *) die "unknown service '$service' (known: ${ALL_SERVICES[*]})" ;;
        esac
    done
}

main() {
    local command="${1:-}"
    [ $# -eq 0 ] || shift
    local services=("$@")
    [ ${#services[@]} -gt 0 ] || services=("${ALL_SERVICES[@]}")
    check_services "${services[@]}"
    mkdir -p "$DIR"
    case "$command" in
        up)
            for service in "${services[@]}"; do "${service}_up"; done
            print_env "${services[@]}"
            ;;
        down)
            for service in "${services[@]}"; do "${service}_down"; done
            ;;
        status)
            for service in "${services[@]}"; do
                if "${service}_running"; then echo "$service: running at $("${service}_url")"
                else echo "$service: stopped"; fi
            done
            ;;
        env)
            print_env "${services[@]}"
            ;;
        *)
            die "usage: $0 up|down|status|env [SERVICE...]"
            ;;
    esac
}

main "$@"
