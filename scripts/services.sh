#!/usr/bin/env bash
# Installs (when missing) and runs the real servers the gateway is tested against,
# on 127.0.0.1 only, with their data under $FANOUT_SERVICES_DIR (default: .services/).
#
#   scripts/services.sh up [SERVICE...]     install what is missing, start, wait, print URLs
#   scripts/services.sh down [SERVICE...]   stop what this script started
#   scripts/services.sh status              say what runs
#   scripts/services.sh env                 print the FANOUT_TEST_*_URL lines
#
# Services: postgres, postgres-replica (a hot standby streaming from postgres),
# postgres-shard-a and postgres-shard-b (two more primaries, the shards of sharded mode),
# postgres-shard-a-replica (a hot standby streaming from postgres-shard-a),
# postgres-ha (three PostgreSQL nodes under Patroni and etcd, each in a network namespace of its
# own; needs root), redis,
# redis-cluster (three masters, each with a replica), mongodb (FerretDB, a MongoDB-wire
# server), elasticsearch, influxdb, influxdb-auth (InfluxDB with authentication on and one
# admin user), kafka (one KRaft node, broker and controller), otelcol (an OpenTelemetry
# Collector built from tools/otelcol: OTLP in, the spans out as JSON lines to a file).
# Ports can be moved with FANOUT_SERVICES_<NAME>_PORT. What the installers print (apt, Go, Maven)
# goes to $FANOUT_SERVICES_DIR/services.log; each step says what it does on one line (the
# collector's build runs in the background while `up` starts the other services). With
# FANOUT_SERVICES_STARTED_FILE set, `up` appends there each service it starts (one a line), so
# that its caller can stop exactly those. `up` lets a server stopped with SIGSTOP run again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FANOUT_SERVICES_DIR:-$ROOT/.services}"
LOG="$DIR/services.log"
# shellcheck source=scripts/quietly.sh
source "$ROOT/scripts/quietly.sh"
PG_PORT="${FANOUT_SERVICES_POSTGRES_PORT:-55432}"
PG_REPLICA_PORT="${FANOUT_SERVICES_POSTGRES_REPLICA_PORT:-55433}"
PG_SHARD_A_PORT="${FANOUT_SERVICES_POSTGRES_SHARD_A_PORT:-55434}"
PG_SHARD_B_PORT="${FANOUT_SERVICES_POSTGRES_SHARD_B_PORT:-55435}"
PG_SHARD_A_REPLICA_PORT="${FANOUT_SERVICES_POSTGRES_SHARD_A_REPLICA_PORT:-55436}"
REDIS_PORT="${FANOUT_SERVICES_REDIS_PORT:-56379}"
# The cluster's six nodes listen on this port and the five after it, and each on its port
# + 10000 for the cluster bus (so at most 55530).
REDIS_CLUSTER_PORT="${FANOUT_SERVICES_REDIS_CLUSTER_PORT:-46400}"
MONGODB_PORT="${FANOUT_SERVICES_MONGODB_PORT:-57017}"
ELASTICSEARCH_PORT="${FANOUT_SERVICES_ELASTICSEARCH_PORT:-59200}"
INFLUXDB_PORT="${FANOUT_SERVICES_INFLUXDB_PORT:-58086}"
INFLUXDB_AUTH_PORT="${FANOUT_SERVICES_INFLUXDB_AUTH_PORT:-58186}"
# The broker listens on this port, its controller on the next.
KAFKA_PORT="${FANOUT_SERVICES_KAFKA_PORT:-59092}"
# The collector's OTLP gRPC receiver listens on this port, its OTLP HTTP receiver on the next.
OTELCOL_PORT="${FANOUT_SERVICES_OTELCOL_PORT:-54317}"
# postgres-ha: three nodes, each in a network namespace of its own on a bridge of this /24
# (the gateway .1, where etcd listens, and the nodes .11, .12, .13), each node's PostgreSQL on
# its address and this port, its Patroni REST API on the next setting's port.
PG_HA_SUBNET="${FANOUT_SERVICES_POSTGRES_HA_SUBNET:-10.231.0}"
PG_HA_PORT="${FANOUT_SERVICES_POSTGRES_HA_PORT:-5432}"
PG_HA_REST_PORT="${FANOUT_SERVICES_POSTGRES_HA_REST_PORT:-8008}"
# etcd's clients port, on the gateway address and 127.0.0.1; its peer port is the next, on 127.0.0.1.
PG_HA_ETCD_PORT="${FANOUT_SERVICES_POSTGRES_HA_ETCD_PORT:-52379}"
# async, sync or strict; empty: sync when the cluster is created, unchanged after.
PG_HA_MODE="${FANOUT_SERVICES_POSTGRES_HA_MODE:-}"
FERRETDB_VERSION=v1.24.0
ELASTICSEARCH_VERSION=8.19.7
INFLUXDB_VERSION=v1.8.10
KAFKA_VERSION=4.1.1
PATRONI_VERSION=4.1.5
PSYCOPG_VERSION=3.3.9
ES_USER=fanout-es
INFLUXDB_AUTH_USER=fanout
INFLUXDB_AUTH_PASSWORD=fanout-influx
PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_USER=fanout
PG_PASSWORD=fanout
PG_REPLICATION_USER=fanout_replication
PG_REPLICATION_PASSWORD=fanout_replication
# WAL a primary keeps for a standby that is down, at most (then the standby is built anew).
PG_STANDBY_WAL_KEEP=4GB
ALL_SERVICES=(postgres postgres-replica postgres-shard-a postgres-shard-a-replica postgres-shard-b postgres-ha redis redis-cluster mongodb elasticsearch influxdb influxdb-auth kafka otelcol)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ "$apt_updated" -eq 0 ]; then
        quietly "$LOG" $sudo apt-get update -qq || die "apt-get update failed (log: $LOG)"
        apt_updated=1
    fi
    quietly "$LOG" $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" || die "could not install $* (log: $LOG)"
}

# The services this call of the script started, in the order it started them.
STARTED=()
started() {
    STARTED+=("$1")
    [ -z "${FANOUT_SERVICES_STARTED_FILE:-}" ] || echo "$1" >>"$FANOUT_SERVICES_STARTED_FILE"
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

# Whether `up` runs: it lets a stopped server run again (see pidfile_alive).
resume_stopped=false

pidfile_alive() {
    [ -f "$1" ] || return 1
    local pid state
    pid="$(head -1 "$1")"
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
    # A killed daemon that no process reaps (in a container without an init) stays a zombie:
    # dead all the same.
    [ "$state" != Z ] || return 1
    # A server stopped with SIGSTOP (a test's paused_server, left so by a killed run) runs but
    # answers nothing: `up` lets it go on.
    if [ "$state" = T ] && $resume_stopped; then
        log "${1#"$DIR"/}: process $pid was stopped (SIGSTOP); sending it SIGCONT"
        kill -CONT "$pid" || true
    fi
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

# Other services need the primary too; checking it once per call says once that it runs.
postgres_checked=false
postgres_up() {
    ! $postgres_checked || return 0
    pg_init postgres
    pg_start postgres "$PG_PORT" "-c track_commit_timestamp=on"
    postgres_checked=true
}

pg_install() {
    [ -x "$PG_BIN/pg_ctl" ] || { log "installing postgresql-$PG_MAJOR (output in $LOG)"; apt_install "postgresql-$PG_MAJOR" postgresql-contrib; }
}

# Installs PostgreSQL when missing and creates the cluster of $DIR/<name>/data unless it exists.
pg_init() {
    local name="$1"
    pg_install
    local data="$DIR/$name/data"
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initialising a cluster in $data"
        mkdir -p "$DIR/$name"
        [ "$(id -u)" -ne 0 ] || chown postgres: "$DIR/$name"
        local pwfile="$DIR/$name/pwfile"
        as_pg_owner bash -c "umask 077; echo '$PG_PASSWORD' > '$pwfile'"
        as_pg_owner "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" \
            --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
        cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/$name'
max_connections = 200
shared_buffers = 256MB
shared_preload_libraries = 'pg_stat_statements'
fsync = on
CONF
    fi
}

# Starts the cluster of $DIR/<name>/data on <port> (with extra server <options>) unless it runs,
# and waits until it accepts connections.
pg_start() {
    local name="$1" port="$2" options="${3:-}"
    local data="$DIR/$name/data" server_log="$DIR/$name/server.log"
    if pidfile_alive "$data/postmaster.pid"; then
        log "$name already running on 127.0.0.1:$port"
    else
        require_free_port "${name//-/_}" "$port"
        log "starting $name on 127.0.0.1:$port"
        started "$name"
        if ! as_pg_owner "$PG_BIN/pg_ctl" -D "$data" -l "$server_log" \
                -o "-p $port $options" -w -t 60 start >/dev/null; then
            tail -n 5 "$server_log" >&2 || true
            die "$name did not start (log: $server_log)"
        fi
    fi
    wait_until "$name" 240 "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$port"
}

postgres_down() { pg_stop postgres; }

# --- postgres-shard-a, postgres-shard-b -------------------------------------
# Two more primaries of their own, so that sharded mode runs over separate servers.

postgres_shard_a_url() { echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_SHARD_A_PORT/postgres"; }
postgres_shard_a_running() { pidfile_alive "$DIR/postgres-shard-a/data/postmaster.pid"; }
# The shard's standby needs it too; checking it once per call says once that it runs.
postgres_shard_a_checked=false
postgres_shard_a_up() {
    ! $postgres_shard_a_checked || return 0
    pg_init postgres-shard-a
    pg_start postgres-shard-a "$PG_SHARD_A_PORT" "-c track_commit_timestamp=on"
    postgres_shard_a_checked=true
}
postgres_shard_a_down() { pg_stop postgres-shard-a; }

postgres_shard_b_url() { echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_SHARD_B_PORT/postgres"; }
postgres_shard_b_running() { pidfile_alive "$DIR/postgres-shard-b/data/postmaster.pid"; }
postgres_shard_b_up() {
    pg_init postgres-shard-b
    pg_start postgres-shard-b "$PG_SHARD_B_PORT" "-c track_commit_timestamp=on"
}
postgres_shard_b_down() { pg_stop postgres-shard-b; }

pg_stop() {
    local name="$1"
    if pidfile_alive "$DIR/$name/data/postmaster.pid"; then
        log "stopping $name"
        as_pg_owner "$PG_BIN/pg_ctl" -D "$DIR/$name/data" -m fast -w stop >/dev/null
    fi
}

# --- postgres-replica, postgres-shard-a-replica ------------------------------
# Hot standbys of the local primary and of the first shard: physical streaming replication
# from a base backup taken with a replication role (no WAL archive). A primary initialised by
# pg_init serves them as it is (wal_level replica, WAL senders, and initdb's pg_hba lines for
# replication from 127.0.0.1): no restart of it is needed, only the role.

postgres_replica_url() { echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_REPLICA_PORT/postgres"; }
postgres_replica_running() { pidfile_alive "$DIR/postgres-replica/data/postmaster.pid"; }

postgres_replica_up() {
    postgres_up
    pg_standby_up postgres-replica "$PG_REPLICA_PORT" postgres "$PG_PORT"
}

postgres_replica_down() { pg_stop postgres-replica; }

postgres_shard_a_replica_url() { echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_SHARD_A_REPLICA_PORT/postgres"; }
postgres_shard_a_replica_running() { pidfile_alive "$DIR/postgres-shard-a-replica/data/postmaster.pid"; }

postgres_shard_a_replica_up() {
    postgres_shard_a_up
    pg_standby_up postgres-shard-a-replica "$PG_SHARD_A_REPLICA_PORT" postgres-shard-a "$PG_SHARD_A_PORT"
}

postgres_shard_a_replica_down() { pg_stop postgres-shard-a-replica; }

# Starts the standby <name> on <port> of the running primary <primary> (on <primary_port>),
# creating it from a base backup unless it exists, and waits until it streams.
pg_standby_up() {
    local name="$1" port="$2" primary="$3" primary_port="$4"
    local data="$DIR/$name/data"
    local slot="fanout_${name//-/_}"
    # A standby streams through a replication slot, so that its primary keeps the WAL it has
    # not received while it is down (a test stops it; benchmarks write gigabytes meanwhile).
    # One without its slot (built before slots, or the slot gave up past
    # max_slot_wal_keep_size) can never catch up: it is built anew.
    if [ -f "$data/PG_VERSION" ] && ! standby_slot_kept "$primary" "$primary_port" "$slot"; then
        log "$name: its replication slot on $primary is missing or lost WAL; building it anew"
        pg_stop "$name"
        rm -rf "${DIR:?}/$name"
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        log "creating the replication role and a base backup of $primary in $data"
        as_pg_owner "$PG_BIN/psql" -h "$DIR/$primary" -p "$primary_port" -U "$PG_USER" -d postgres \
            -v ON_ERROR_STOP=1 -q -c "DO \$\$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_REPLICATION_USER') THEN
                    CREATE ROLE $PG_REPLICATION_USER WITH REPLICATION LOGIN
                        PASSWORD '$PG_REPLICATION_PASSWORD';
                END IF;
            END \$\$;" >/dev/null
        as_pg_owner "$PG_BIN/psql" -h "$DIR/$primary" -p "$primary_port" -U "$PG_USER" -d postgres \
            -v ON_ERROR_STOP=1 -q \
            -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$slot'" \
            -c "ALTER SYSTEM SET max_slot_wal_keep_size = '$PG_STANDBY_WAL_KEEP'" \
            -c "SELECT pg_reload_conf()" >/dev/null
        rm -rf "${DIR:?}/$name"
        mkdir -p "$DIR/$name"
        [ "$(id -u)" -ne 0 ] || chown postgres: "$DIR/$name"
        # -R writes primary_conninfo, primary_slot_name and standby.signal: the copy starts as a
        # streaming standby; -C -S creates its slot as the backup starts.
        as_pg_owner env PGPASSWORD="$PG_REPLICATION_PASSWORD" "$PG_BIN/pg_basebackup" \
            -h 127.0.0.1 -p "$primary_port" -U "$PG_REPLICATION_USER" -D "$data" \
            -R -C -S "$slot" -X stream -c fast >/dev/null
        cat >>"$data/postgresql.conf" <<CONF
unix_socket_directories = '$DIR/$name'
hot_standby = on
CONF
    fi
    pg_start "$name" "$port"
    wait_until "$name streaming" 240 standby_streams "$name" "$port"
}

# Whether the primary <primary> (on <primary_port>) holds the replication slot <slot> with
# its WAL (not lost past max_slot_wal_keep_size).
standby_slot_kept() {
    local primary="$1" primary_port="$2" slot="$3"
    [ "$(as_pg_owner "$PG_BIN/psql" -h "$DIR/$primary" -p "$primary_port" -U "$PG_USER" \
        -d postgres -Atq \
        -c "SELECT wal_status <> 'lost' FROM pg_replication_slots WHERE slot_name = '$slot'")" = t ]
}

# Whether the standby <name> on <port> is in recovery and streaming from its primary.
standby_streams() {
    local name="$1" port="$2"
    [ "$(as_pg_owner "$PG_BIN/psql" -h "$DIR/$name" -p "$port" \
        -U "$PG_USER" -d postgres -Atq \
        -c "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')")" = t ]
}

# --- postgres-ha --------------------------------------------------------------
# Three PostgreSQL nodes managed by Patroni (from PyPI, in a virtualenv of its own under
# $DIR/patroni), with one etcd as their consensus store. Each node runs in a network namespace
# of its own (fanout-ha1..3) with a veth into the bridge fanoutha0 of the root namespace, so
# that a test can cut one node off etcd and the others (iptables inside its namespace, see
# support/ha_cluster.py) while it keeps running. Namespaces need root.

PG_HA_NODES=(ha1 ha2 ha3)
PG_HA_BRIDGE=fanoutha0
PG_HA_GATEWAY="$PG_HA_SUBNET.1"
PG_HA_HOME="$DIR/postgres-ha"
PATRONI_VENV="$DIR/patroni/venv-$PATRONI_VERSION"
# Debian's interpreter, not one under a user's home: the nodes run as the postgres user.
PATRONI_PYTHON=/usr/bin/python3

pg_ha_netns() { echo "fanout-$1"; }
pg_ha_ip() { echo "$PG_HA_SUBNET.1${1#ha}"; }
pg_ha_rest_url() { echo "http://$(pg_ha_ip "$1"):$PG_HA_REST_PORT"; }

postgres_ha_url() {
    local hosts=() node
    for node in "${PG_HA_NODES[@]}"; do hosts+=("$(pg_ha_ip "$node"):$PG_HA_PORT"); done
    local IFS=,
    echo "postgresql://$PG_USER:$PG_PASSWORD@${hosts[*]}/fanout?target_session_attrs=read-write"
}

# The extra lines `env` and `up` print for this service: the nodes' Patroni REST APIs.
postgres_ha_env() {
    local urls=() node
    for node in "${PG_HA_NODES[@]}"; do urls+=("$(pg_ha_rest_url "$node")"); done
    local IFS=,
    echo "FANOUT_TEST_POSTGRES_HA_PATRONI=${urls[*]}"
}

# Like pidfile_alive, for processes of root that another user may only look at.
pg_ha_alive() {
    [ -f "$1" ] || return 1
    local state
    state="$(sed 's/.*) //' "/proc/$(head -1 "$1")/stat" 2>/dev/null | cut -d' ' -f1)"
    [ -n "$state" ] && [ "$state" != Z ]
}

postgres_ha_running() {
    pg_ha_alive "$PG_HA_HOME/etcd/etcd.pid" && return 0
    local node
    for node in "${PG_HA_NODES[@]}"; do
        pg_ha_alive "$PG_HA_HOME/$node/patroni.pid" && return 0
    done
    return 1
}

# As another user than root, runs this script's command $1 for postgres-ha through sudo, and
# succeeds; as root, fails (the caller goes on itself).
pg_ha_through_sudo() {
    [ "$(id -u)" -ne 0 ] || return 1
    sudo -n true 2>/dev/null \
        || die "postgres-ha needs root (network namespaces, iptables): run as root or with sudo that asks no password"
    local settings
    mapfile -t settings < <(env | grep '^FANOUT_SERVICES_' || true)
    sudo -n env "${settings[@]}" FANOUT_SERVICES_DIR="$DIR" bash "$ROOT/scripts/services.sh" "$1" postgres-ha >/dev/null \
        || die "postgres-ha: '$1' through sudo failed"
}

# The synchronous_mode and synchronous_mode_strict of a mode, as "true false".
pg_ha_mode_flags() {
    case "$1" in
        async) echo "false false" ;;
        sync) echo "true false" ;;
        strict) echo "true true" ;;
        *) die "FANOUT_SERVICES_POSTGRES_HA_MODE must be async, sync or strict, not '$1'" ;;
    esac
}

pg_ha_install() {
    pg_install
    command -v etcd >/dev/null || { log "installing etcd-server (output in $LOG)"; apt_install etcd-server; }
    command -v iptables >/dev/null || { log "installing iptables (output in $LOG)"; apt_install iptables; }
    [ ! -f "$PATRONI_VENV/installed" ] || return 0
    "$PATRONI_PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || { log "installing python3-venv (output in $LOG)"; apt_install python3 python3-venv; }
    log "installing Patroni $PATRONI_VERSION into $PATRONI_VENV (output in $LOG)"
    rm -rf "$PATRONI_VENV"
    quietly "$LOG" "$PATRONI_PYTHON" -m venv "$PATRONI_VENV" || die "could not create $PATRONI_VENV (log: $LOG)"
    quietly "$LOG" "$PATRONI_VENV/bin/pip" install --disable-pip-version-check -q \
        "patroni[etcd3]==$PATRONI_VERSION" "psycopg[binary]==$PSYCOPG_VERSION" \
        || die "could not install Patroni (log: $LOG)"
    touch "$PATRONI_VENV/installed"
}

pg_ha_network_up() {
    if ! ip link show "$PG_HA_BRIDGE" >/dev/null 2>&1; then
        log "creating the bridge $PG_HA_BRIDGE ($PG_HA_GATEWAY/24) and a network namespace per node"
        ip link add "$PG_HA_BRIDGE" type bridge
        ip addr add "$PG_HA_GATEWAY/24" dev "$PG_HA_BRIDGE"
        ip link set "$PG_HA_BRIDGE" up
    fi
    local node
    for node in "${PG_HA_NODES[@]}"; do
        local ns veth="fanout$node"
        ns="$(pg_ha_netns "$node")"
        [ -e "/run/netns/$ns" ] || ip netns add "$ns"
        if ! ip link show "$veth" >/dev/null 2>&1; then
            ip link add "$veth" type veth peer name eth0 netns "$ns"
            ip link set "$veth" master "$PG_HA_BRIDGE" up
            ip -n "$ns" addr add "$(pg_ha_ip "$node")/24" dev eth0
            ip -n "$ns" link set eth0 up
            ip -n "$ns" link set lo up
        fi
    done
    # With br_netfilter loaded, frames between the bridge's ports pass the root namespace's
    # FORWARD chain, which a container runtime may have set to drop.
    iptables -w -C FORWARD -i "$PG_HA_BRIDGE" -o "$PG_HA_BRIDGE" -j ACCEPT 2>/dev/null \
        || iptables -w -I FORWARD -i "$PG_HA_BRIDGE" -o "$PG_HA_BRIDGE" -j ACCEPT
}

pg_ha_network_down() {
    local node
    for node in "${PG_HA_NODES[@]}"; do
        local ns
        ns="$(pg_ha_netns "$node")"
        [ ! -e "/run/netns/$ns" ] || ip netns delete "$ns"
    done
    if ip link show "$PG_HA_BRIDGE" >/dev/null 2>&1; then
        log "removing the bridge $PG_HA_BRIDGE and the nodes' network namespaces"
        ip link delete "$PG_HA_BRIDGE"
    fi
    while iptables -w -D FORWARD -i "$PG_HA_BRIDGE" -o "$PG_HA_BRIDGE" -j ACCEPT 2>/dev/null; do :; done
}

pg_ha_etcd_up() {
    local home="$PG_HA_HOME/etcd" peer="http://127.0.0.1:$((PG_HA_ETCD_PORT + 1))"
    mkdir -p "$home"
    if pidfile_alive "$home/etcd.pid"; then
        log "etcd already running on $PG_HA_GATEWAY:$PG_HA_ETCD_PORT"
    else
        require_free_port postgres_ha_etcd "$PG_HA_ETCD_PORT"
        log "starting etcd on $PG_HA_GATEWAY:$PG_HA_ETCD_PORT and 127.0.0.1:$PG_HA_ETCD_PORT"
        spawn "$home/etcd.pid" "$home/server.log" etcd --name fanout-ha --data-dir "$home/data" \
            --listen-client-urls "http://$PG_HA_GATEWAY:$PG_HA_ETCD_PORT,http://127.0.0.1:$PG_HA_ETCD_PORT" \
            --advertise-client-urls "http://$PG_HA_GATEWAY:$PG_HA_ETCD_PORT" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "fanout-ha=$peer" --logger zap --log-level warn
    fi
    wait_until etcd 120 curl -sf --max-time 2 "http://127.0.0.1:$PG_HA_ETCD_PORT/health"
}

# Writes the Patroni configuration of node $1 from scripts/patroni/patroni.yml.template.
pg_ha_configure() {
    local node="$1" home="$PG_HA_HOME/$1" flags
    flags="$(pg_ha_mode_flags "${PG_HA_MODE:-sync}")"
    sed -e "s|@NODE@|$node|g" -e "s|@NODE_IP@|$(pg_ha_ip "$node")|g" \
        -e "s|@NODE_DIR@|$home|g" -e "s|@REST_PORT@|$PG_HA_REST_PORT|g" \
        -e "s|@PG_PORT@|$PG_HA_PORT|g" -e "s|@ETCD_HOST@|$PG_HA_GATEWAY|g" \
        -e "s|@ETCD_PORT@|$PG_HA_ETCD_PORT|g" -e "s|@SUBNET@|$PG_HA_SUBNET|g" \
        -e "s|@SYNCHRONOUS_MODE@|${flags% *}|g" -e "s|@SYNCHRONOUS_MODE_STRICT@|${flags#* }|g" \
        -e "s|@SCRIPTS@|$ROOT/scripts/patroni|g" -e "s|@PG_BIN@|$PG_BIN|g" \
        -e "s|@PG_USER@|$PG_USER|g" -e "s|@PG_PASSWORD@|$PG_PASSWORD|g" \
        -e "s|@PG_REPLICATION_USER@|$PG_REPLICATION_USER|g" \
        -e "s|@PG_REPLICATION_PASSWORD@|$PG_REPLICATION_PASSWORD|g" \
        "$ROOT/scripts/patroni/patroni.yml.template" >"$home/patroni.yml.new"
    chown postgres: "$home/patroni.yml.new"
    chmod 600 "$home/patroni.yml.new"
    mv "$home/patroni.yml.new" "$home/patroni.yml"
}

pg_ha_node_up() {
    local node="$1" home="$PG_HA_HOME/$1" ip
    ip="$(pg_ha_ip "$node")"
    mkdir -p "$home"
    chown postgres: "$home"
    chmod 700 "$home"
    pg_ha_configure "$node"
    if pidfile_alive "$home/patroni.pid"; then
        log "postgres-ha node $node already running on $ip"
        return
    fi
    # A postmaster left by a Patroni that was killed would hold the data directory.
    if pidfile_alive "$home/data/postmaster.pid"; then
        as_pg_owner "$PG_BIN/pg_ctl" -D "$home/data" -m immediate -w stop >/dev/null || true
    fi
    log "starting postgres-ha node $node on $ip (PostgreSQL :$PG_HA_PORT, Patroni :$PG_HA_REST_PORT)"
    case " ${STARTED[*]} " in *" postgres-ha "*) ;; *) started postgres-ha ;; esac
    # Each of these commands replaces itself with the next, so the pid recorded is Patroni's.
    spawn "$home/patroni.pid" "$home/patroni.log" ip netns exec "$(pg_ha_netns "$node")" \
        setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME="$home" PATH="$PG_BIN:$PATH" "$PATRONI_VENV/bin/patroni" "$home/patroni.yml"
}

# The cluster as one node's Patroni sees it: GET /cluster of the first that answers.
pg_ha_cluster() {
    local node
    for node in "${PG_HA_NODES[@]}"; do
        curl -sf --max-time 2 "$(pg_ha_rest_url "$node")/cluster" && return 0
    done
    return 1
}

# Whether there is a leader and every other node streams from it. Each node's own Patroni must
# answer that its PostgreSQL runs (GET /health): the member list in etcd still shows a killed
# node until its key expires.
pg_ha_healthy() {
    local node
    for node in "${PG_HA_NODES[@]}"; do
        curl -sf --max-time 2 -o /dev/null "$(pg_ha_rest_url "$node")/health" || return 1
    done
    pg_ha_cluster | "$PATRONI_VENV/bin/python" -c '
import json, sys
members = json.load(sys.stdin)["members"]
leaders = [m for m in members if m["role"] == "leader" and m["state"] == "running"]
streaming = [m for m in members if m["role"] != "leader" and m["state"] == "streaming"]
sys.exit(0 if len(leaders) == 1 and len(streaming) == int(sys.argv[1]) - 1 else 1)
' "${#PG_HA_NODES[@]}"
}

# Sets the replication mode of the running cluster to $PG_HA_MODE (PATCH /config).
pg_ha_apply_mode() {
    local flags
    flags="$(pg_ha_mode_flags "$PG_HA_MODE")"
    log "postgres-ha: replication mode $PG_HA_MODE"
    local node
    for node in "${PG_HA_NODES[@]}"; do
        if curl -sf --max-time 5 -o /dev/null -X PATCH -H 'Content-Type: application/json' \
            -d "{\"synchronous_mode\": ${flags% *}, \"synchronous_mode_strict\": ${flags#* }}" \
            "$(pg_ha_rest_url "$node")/config"; then
            return 0
        fi
    done
    die "postgres-ha: no node took the replication mode"
}

postgres_ha_up() {
    [ -z "$PG_HA_MODE" ] || pg_ha_mode_flags "$PG_HA_MODE" >/dev/null
    if pg_ha_through_sudo up; then return; fi
    pg_ha_install
    pg_ha_network_up
    pg_ha_etcd_up
    local node
    for node in "${PG_HA_NODES[@]}"; do pg_ha_node_up "$node"; done
    wait_until "postgres-ha (a leader and $((${#PG_HA_NODES[@]} - 1)) streaming replicas)" 240 pg_ha_healthy
    [ -z "$PG_HA_MODE" ] || pg_ha_apply_mode
}

postgres_ha_down() {
    if pg_ha_through_sudo down; then return; fi
    local node pidfile
    for node in "${PG_HA_NODES[@]}"; do
        pidfile="$PG_HA_HOME/$node/patroni.pid"
        if pidfile_alive "$pidfile"; then
            log "stopping postgres-ha node $node"
            kill "$(head -1 "$pidfile")"
        fi
    done
    # Patroni stops its PostgreSQL before it exits; a postmaster whose Patroni was killed is
    # stopped here.
    for node in "${PG_HA_NODES[@]}"; do
        pidfile="$PG_HA_HOME/$node/patroni.pid"
        for _ in $(seq 120); do pidfile_alive "$pidfile" || break; sleep 0.5; done
        rm -f "$pidfile"
        if pidfile_alive "$PG_HA_HOME/$node/data/postmaster.pid"; then
            as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_HA_HOME/$node/data" -m fast -w stop >/dev/null
        fi
    done
    stop_pidfile "postgres-ha etcd" "$PG_HA_HOME/etcd/etcd.pid"
    pg_ha_network_down
}

# --- redis ------------------------------------------------------------------

redis_url() { echo "redis://127.0.0.1:$REDIS_PORT/0"; }
redis_running() { pidfile_alive "$DIR/redis/redis.pid"; }
# redis-cli exits 0 on an error reply too, such as LOADING while the AOF is read back.
redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_up() {
    command -v redis-server >/dev/null || { log "installing redis-server (output in $LOG)"; apt_install redis-server redis-tools; }
    mkdir -p "$DIR/redis"
    if redis_running; then
        log "redis already running on 127.0.0.1:$REDIS_PORT"
    else
        require_free_port redis "$REDIS_PORT"
        log "starting redis on 127.0.0.1:$REDIS_PORT"
        started redis
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
            --daemonize yes --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/server.log" \
            --save "" --appendonly yes --appendfsync everysec
    fi
    wait_until redis 240 redis_answers
}

redis_down() { stop_pidfile redis "$DIR/redis/redis.pid"; }

# --- redis-cluster ----------------------------------------------------------
# Six nodes: three masters with a replica each, so that a master's failure is taken over by
# its replica (after cluster-node-timeout). Nodes restarted later rejoin from nodes.conf.

redis_cluster_ports() { seq "$REDIS_CLUSTER_PORT" $((REDIS_CLUSTER_PORT + 5)); }
redis_cluster_url() { echo "redis://127.0.0.1:$REDIS_CLUSTER_PORT/0"; }
redis_cluster_node_alive() { pidfile_alive "$DIR/redis-cluster/$1/redis.pid"; }
redis_cluster_running() {
    local port
    for port in $(redis_cluster_ports); do
        redis_cluster_node_alive "$port" && return 0
    done
    return 1
}
redis_cluster_ok() {
    local port
    for port in $(redis_cluster_ports); do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' \
            || return 1
    done
}

redis_cluster_up() {
    command -v redis-server >/dev/null || { log "installing redis-server (output in $LOG)"; apt_install redis-server redis-tools; }
    local port
    for port in $(redis_cluster_ports); do
        mkdir -p "$DIR/redis-cluster/$port"
        if redis_cluster_node_alive "$port"; then continue; fi
        require_free_port redis_cluster "$port"
        log "starting redis cluster node on 127.0.0.1:$port"
        case " ${STARTED[*]} " in *" redis-cluster "*) ;; *) started redis-cluster ;; esac
        (cd "$DIR/redis-cluster/$port" && redis-server --bind 127.0.0.1 --port "$port" \
            --dir "$DIR/redis-cluster/$port" --daemonize yes \
            --pidfile "$DIR/redis-cluster/$port/redis.pid" \
            --logfile "$DIR/redis-cluster/$port/server.log" \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000 --save "" --appendonly yes --appendfsync everysec)
    done
    for port in $(redis_cluster_ports); do
        wait_until "redis cluster node $port" 240 \
            bash -c "[ \"\$(redis-cli -h 127.0.0.1 -p $port ping)\" = PONG ]"
    done
    # A node that knows no other has never been part of the cluster: create it.
    if redis-cli -h 127.0.0.1 -p "$REDIS_CLUSTER_PORT" cluster info | grep -q '^cluster_known_nodes:1\b'; then
        log "creating the redis cluster (three masters, one replica each)"
        local nodes=()
        for port in $(redis_cluster_ports); do nodes+=("127.0.0.1:$port"); done
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
    fi
    wait_until "redis cluster" 240 redis_cluster_ok
}

redis_cluster_down() {
    local port
    for port in $(redis_cluster_ports); do
        stop_pidfile "redis cluster node $port" "$DIR/redis-cluster/$port/redis.pid"
    done
}

# Starts "$@" in the background with its output in $log, recording its pid in $pidfile.
spawn() {
    local pidfile="$1" log="$2"
    shift 2
    # A session of its own: the server outlives whatever started it (and its signals), and
    # its folder (started from /, so that removing the caller's folder leaves it working:
    # Patroni's pg_ctl fails in a folder that no longer exists).
    (cd / && exec setsid nohup "$@" >"$log" 2>&1) &
    echo $! >"$pidfile"
}

stop_pidfile() {
    local service="$1" pidfile="$2"
    if pidfile_alive "$pidfile"; then
        log "stopping $service"
        local pid
        pid="$(head -1 "$pidfile")"
        kill "$pid"
        # A server stopped with SIGSTOP takes the SIGTERM only once it runs again.
        kill -CONT "$pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -f "$pidfile"
}

# Maven, its output (errors only) in the log, without the colour codes Debian's build prints
# even in batch mode.
maven() {
    quietly "$LOG" mvn -B -q -Dstyle.color=never "$@" || die "Maven failed (log: $LOG)"
}

require_go() {
    command -v go >/dev/null || die "Go is needed to build $1 (https://go.dev/dl/)"
}

# psql as the service user, on the server's maintenance database.
pg_admin() {
    PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" \
        -d postgres "$@"
}

# --- mongodb (FerretDB) -----------------------------------------------------
# No mongod can be installed here: FerretDB speaks MongoDB's wire protocol, keeping its data
# in a database of the local PostgreSQL (its SQLite backend is 20x slower at upserts).
# Its published Go module lacks the generated build/version/version.txt, which its build
# requires, so the module is copied, the file written, and the binary built from the copy.

mongodb_url() { echo "mongodb://127.0.0.1:$MONGODB_PORT/"; }
mongodb_running() { pidfile_alive "$DIR/mongodb/ferretdb.pid"; }

mongodb_up() {
    local binary="$DIR/bin/ferretdb-$FERRETDB_VERSION"
    if [ ! -x "$binary" ]; then
        require_go FerretDB
        log "building FerretDB $FERRETDB_VERSION (output in $LOG)"
        local source
        source="$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>>"$LOG" \
            | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
        [ -d "$source" ] || die "could not download the FerretDB module"
        rm -rf "$DIR/build/ferretdb"
        mkdir -p "$DIR/build" "$DIR/bin"
        cp -r "$source" "$DIR/build/ferretdb"
        chmod -R u+w "$DIR/build/ferretdb"
        echo "$FERRETDB_VERSION" >"$DIR/build/ferretdb/build/version/version.txt"
        (cd "$DIR/build/ferretdb" && quietly "$LOG" go build -o "$binary" ./cmd/ferretdb) \
            || die "could not build FerretDB (log: $LOG)"
        rm -rf "$DIR/build/ferretdb"
    fi
    postgres_up
    if [ "$(pg_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'")" != 1 ]; then
        pg_admin -qc "CREATE DATABASE ferretdb"
    fi
    mkdir -p "$DIR/mongodb"
    if mongodb_running; then
        log "mongodb (FerretDB) already running on 127.0.0.1:$MONGODB_PORT"
    else
        require_free_port mongodb "$MONGODB_PORT"
        log "starting FerretDB on 127.0.0.1:$MONGODB_PORT"
        started mongodb
        spawn "$DIR/mongodb/ferretdb.pid" "$DIR/mongodb/server.log" "$binary" \
            --handler=postgresql \
            --postgresql-url="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/ferretdb" \
            --state-dir="$DIR/mongodb" \
            --listen-addr="127.0.0.1:$MONGODB_PORT" --debug-addr="127.0.0.1:$((MONGODB_PORT + 1))" \
            --telemetry=disable --log-level=WARN
    fi
    wait_until mongodb 240 bash -c "exec 3<>/dev/tcp/127.0.0.1/$MONGODB_PORT"
}

mongodb_down() { stop_pidfile mongodb "$DIR/mongodb/ferretdb.pid"; }

# --- elasticsearch ------------------------------------------------------------
# The real distribution, as Maven Central publishes it for integration tests. It refuses to
# run as root, so as root it runs as a system user of its own. Security is off: the server
# listens on 127.0.0.1 only and holds test data.

elasticsearch_url() { echo "http://127.0.0.1:$ELASTICSEARCH_PORT"; }
elasticsearch_running() { pidfile_alive "$DIR/elasticsearch/es.pid"; }

java17_home() {
    local candidate
    for candidate in "${FANOUT_SERVICES_JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-amd64 \
        /usr/lib/jvm/java-17-openjdk-arm64 /usr/lib/jvm/java-17-openjdk; do
        if [ -n "$candidate" ] && [ -x "$candidate/bin/java" ]; then echo "$candidate"; return; fi
    done
    log "installing openjdk-17-jre-headless (output in $LOG)"
    apt_install openjdk-17-jre-headless
    java17_home
}

elasticsearch_up() {
    local home="$DIR/elasticsearch/home-$ELASTICSEARCH_VERSION"
    if [ ! -x "$home/bin/elasticsearch" ]; then
        command -v mvn >/dev/null || { log "installing maven (output in $LOG)"; apt_install maven; }
        command -v unzip >/dev/null || { log "installing unzip (output in $LOG)"; apt_install unzip; }
        log "fetching Elasticsearch $ELASTICSEARCH_VERSION from Maven Central (output in $LOG)"
        mkdir -p "$DIR/downloads" "$DIR/elasticsearch"
        maven dependency:copy \
            "-Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ELASTICSEARCH_VERSION:zip" \
            "-DoutputDirectory=$DIR/downloads"
        rm -rf "$DIR/elasticsearch/unpack"
        unzip -q "$DIR/downloads/elasticsearch-$ELASTICSEARCH_VERSION.zip" -d "$DIR/elasticsearch/unpack"
        mv "$DIR/elasticsearch/unpack/elasticsearch-$ELASTICSEARCH_VERSION" "$home"
        rm -rf "$DIR/elasticsearch/unpack"
    fi
    mkdir -p "$DIR/elasticsearch/data" "$DIR/elasticsearch/logs"
    local run_as=()
    if [ "$(id -u)" -eq 0 ]; then
        id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
        chown -R "$ES_USER:" "$DIR/elasticsearch"
        run_as=(runuser -u "$ES_USER" --)
    fi
    if elasticsearch_running; then
        log "elasticsearch already running on 127.0.0.1:$ELASTICSEARCH_PORT"
    else
        require_free_port elasticsearch "$ELASTICSEARCH_PORT"
        log "starting Elasticsearch on 127.0.0.1:$ELASTICSEARCH_PORT"
        started elasticsearch
        ES_JAVA_HOME="$(java17_home)" ES_JAVA_OPTS="-Xms512m -Xmx512m" "${run_as[@]}" \
            "$home/bin/elasticsearch" -d -p "$DIR/elasticsearch/es.pid" \
            -Ediscovery.type=single-node -Ehttp.host=127.0.0.1 -Ehttp.port="$ELASTICSEARCH_PORT" \
            -Etransport.host=127.0.0.1 -Etransport.port="$((ELASTICSEARCH_PORT + 100))" \
            -Epath.data="$DIR/elasticsearch/data" -Epath.logs="$DIR/elasticsearch/logs" \
            -Ecluster.routing.allocation.disk.threshold_enabled=false \
            -Expack.security.enabled=false -Expack.ml.enabled=false \
            >"$DIR/elasticsearch/start.log" 2>&1 \
            || { tail -n 20 "$DIR/elasticsearch/start.log" >&2; die "elasticsearch did not start"; }
    fi
    wait_until elasticsearch 240 curl -sf \
        "http://127.0.0.1:$ELASTICSEARCH_PORT/_cluster/health?wait_for_status=yellow&timeout=1s"
}

elasticsearch_down() { stop_pidfile elasticsearch "$DIR/elasticsearch/es.pid"; }

# --- influxdb -------------------------------------------------------------------
# InfluxDB 1.8 is the newest 1.x that builds with plain `go install` (1.9+ need the Rust
# libflux); it serves both the v1 /write and the v2-compatible /api/v2/write endpoints.

influxdb_url() { echo "http://127.0.0.1:$INFLUXDB_PORT"; }
influxdb_running() { pidfile_alive "$DIR/influxdb/influxd.pid"; }

# Builds influxd when missing; prints its path.
influxdb_binary() {
    local binary="$DIR/bin/influxd-$INFLUXDB_VERSION"
    if [ ! -x "$binary" ]; then
        require_go InfluxDB
        log "building InfluxDB $INFLUXDB_VERSION (output in $LOG)"
        mkdir -p "$DIR/bin" "$DIR/build/influxdb-bin"
        quietly "$LOG" env GOBIN="$DIR/build/influxdb-bin" \
            go install "github.com/influxdata/influxdb/cmd/influxd@$INFLUXDB_VERSION" \
            || die "could not build InfluxDB (log: $LOG)"
        mv "$DIR/build/influxdb-bin/influxd" "$binary"
        rm -rf "$DIR/build/influxdb-bin"
    fi
    echo "$binary"
}

influxdb_up() {
    local binary
    binary="$(influxdb_binary)"
    mkdir -p "$DIR/influxdb"
    cat >"$DIR/influxdb/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((INFLUXDB_PORT + 2))"
[meta]
  dir = "$DIR/influxdb/meta"
[data]
  dir = "$DIR/influxdb/data"
  wal-dir = "$DIR/influxdb/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUXDB_PORT"
  log-enabled = false
[logging]
  level = "warn"
CONF
    if influxdb_running; then
        log "influxdb already running on 127.0.0.1:$INFLUXDB_PORT"
    else
        require_free_port influxdb "$INFLUXDB_PORT"
        log "starting InfluxDB on 127.0.0.1:$INFLUXDB_PORT"
        started influxdb
        spawn "$DIR/influxdb/influxd.pid" "$DIR/influxdb/server.log" "$binary" \
            -config "$DIR/influxdb/influxdb.conf"
    fi
    wait_until influxdb 360 curl -sf "http://127.0.0.1:$INFLUXDB_PORT/ping"
}

influxdb_down() { stop_pidfile influxdb "$DIR/influxdb/influxd.pid"; }

influxdb_auth_url() {
    echo "http://$INFLUXDB_AUTH_USER:$INFLUXDB_AUTH_PASSWORD@127.0.0.1:$INFLUXDB_AUTH_PORT"
}
influxdb_auth_running() { pidfile_alive "$DIR/influxdb-auth/influxd.pid"; }

influxdb_auth_up() {
    local binary home="$DIR/influxdb-auth" url="http://127.0.0.1:$INFLUXDB_AUTH_PORT"
    binary="$(influxdb_binary)"
    mkdir -p "$home"
    cat >"$home/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((INFLUXDB_AUTH_PORT + 2))"
[meta]
  dir = "$home/meta"
[data]
  dir = "$home/data"
  wal-dir = "$home/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUXDB_AUTH_PORT"
  auth-enabled = true
  log-enabled = false
[logging]
  level = "warn"
CONF
    if influxdb_auth_running; then
        log "influxdb-auth already running on 127.0.0.1:$INFLUXDB_AUTH_PORT"
    else
        require_free_port influxdb_auth "$INFLUXDB_AUTH_PORT"
        log "starting InfluxDB with authentication on 127.0.0.1:$INFLUXDB_AUTH_PORT"
        started influxdb-auth
        spawn "$home/influxd.pid" "$home/server.log" "$binary" -config "$home/influxdb.conf"
    fi
    wait_until influxdb-auth 360 curl -sf "$url/ping"
    # Without users, InfluxDB accepts the first admin's creation unauthenticated.
    curl -s -o /dev/null -XPOST "$url/query" --data-urlencode \
        "q=CREATE USER $INFLUXDB_AUTH_USER WITH PASSWORD '$INFLUXDB_AUTH_PASSWORD' WITH ALL PRIVILEGES"
    curl -sf -o /dev/null -u "$INFLUXDB_AUTH_USER:$INFLUXDB_AUTH_PASSWORD" \
        --data-urlencode "q=SHOW USERS" "$url/query" || die "influxdb-auth: the admin cannot log in"
}

influxdb_auth_down() { stop_pidfile influxdb-auth "$DIR/influxdb-auth/influxd.pid"; }

# --- kafka --------------------------------------------------------------------
# Apache Kafka in KRaft mode, one node as broker and controller, run from its jars on Maven
# Central (kafka_2.13 and what it depends on, resolved by Maven into a class path) on JDK 17.

kafka_url() { echo "kafka://127.0.0.1:$KAFKA_PORT"; }
kafka_running() { pidfile_alive "$DIR/kafka/kafka.pid"; }

kafka_up() {
    local home="$DIR/kafka/home-$KAFKA_VERSION"
    if [ ! -s "$home/classpath" ]; then
        command -v mvn >/dev/null || { log "installing maven (output in $LOG)"; apt_install maven; }
        log "fetching Apache Kafka $KAFKA_VERSION from Maven Central (output in $LOG)"
        mkdir -p "$home"
        cat >"$home/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fanout.services</groupId>
  <artifactId>kafka-server</artifactId>
  <version>$KAFKA_VERSION</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
POM
        maven -f "$home/pom.xml" dependency:build-classpath \
            "-Dmdep.outputFile=$home/classpath.partial"
        mv "$home/classpath.partial" "$home/classpath"
    fi
    mkdir -p "$DIR/kafka/data"
    cat >"$DIR/kafka/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((KAFKA_PORT + 1))
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$((KAFKA_PORT + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/kafka/data
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
CONF
    cat >"$DIR/kafka/log4j2.yaml" <<CONF
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
CONF
    local java
    java="$(java17_home)/bin/java"
    local run=("$java" -Xms256m -Xmx512m -cp "$(cat "$home/classpath")"
        "-Dlog4j2.configurationFile=$DIR/kafka/log4j2.yaml")
    if [ ! -f "$DIR/kafka/data/meta.properties" ]; then
        log "formatting Kafka's log directory"
        quietly "$LOG" "${run[@]}" kafka.tools.StorageTool format \
            --config "$DIR/kafka/server.properties" \
            --cluster-id "$("${run[@]}" kafka.tools.StorageTool random-uuid)" \
            || die "could not format Kafka's log directory (log: $LOG)"
    fi
    if kafka_running; then
        log "kafka already running on 127.0.0.1:$KAFKA_PORT"
    else
        require_free_port kafka "$KAFKA_PORT"
        log "starting Kafka on 127.0.0.1:$KAFKA_PORT"
        started kafka
        spawn "$DIR/kafka/kafka.pid" "$DIR/kafka/server.log" "${run[@]}" kafka.Kafka \
            "$DIR/kafka/server.properties"
    fi
    wait_until kafka 120 kafka_answers
}

# The broker answers once a metadata request lists it (with the project's client when it is
# installed; else once its port takes connections).
kafka_answers() {
    kafka_running || return 1
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null
        return
    fi
    "$ROOT/.venv/bin/python" - "$KAFKA_PORT" 2>/dev/null <<'PY'
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{sys.argv[1]}")
    await admin.start()
    try:
        await admin.describe_cluster()
    finally:
        await admin.close()


asyncio.run(main())
PY
}

kafka_down() { stop_pidfile kafka "$DIR/kafka/kafka.pid"; }

# --- otelcol ------------------------------------------------------------------
# An OpenTelemetry Collector of our own (tools/otelcol: the OTLP receiver, the batch processor
# and the file exporter), built with `go build` from the Go module proxy. It writes every span
# it receives to $DIR/otelcol/spans.jsonl, one export request a JSON line, within 100 ms; the
# file holds the spans of the collector's current run (each start empties it).

otelcol_url() { echo "http://127.0.0.1:$OTELCOL_PORT"; }
otelcol_running() { pidfile_alive "$DIR/otelcol/otelcol.pid"; }

# The extra lines `env` and `up` print for this service: the OTLP endpoints and the spans file.
otelcol_env() {
    echo "FANOUT_TEST_OTLP_ENDPOINT=http://127.0.0.1:$OTELCOL_PORT"
    echo "FANOUT_TEST_OTLP_HTTP_ENDPOINT=http://127.0.0.1:$((OTELCOL_PORT + 1))"
    echo "FANOUT_TEST_OTEL_SPANS_FILE=$DIR/otelcol/spans.jsonl"
}

# The collector is built when missing or when its source changed since the last build (a hash
# of go.mod, go.sum and main.go is kept beside the binary). Its cold build takes minutes, so
# `up` starts it in the background before the other services (otelcol_build_start) and
# otelcol_up waits for it (otelcol_build_finish).
OTELCOL_BIN="$DIR/otelcol/bin"
OTELCOL_BUILD_PID=""
OTELCOL_BUILD_HASH=""

otelcol_source_hash() {
    local source="$ROOT/tools/otelcol"
    cat "$source/go.mod" "$source/go.sum" "$source/main.go" | sha256sum | cut -d' ' -f1
}

otelcol_needs_build() {
    [ ! -x "$OTELCOL_BIN/otelcol" ] \
        || [ "$(cat "$OTELCOL_BIN/otelcol.sha256" 2>/dev/null)" != "$(otelcol_source_hash)" ]
}

# Starts the build in the background, its output in $OTELCOL_BIN/build.log until
# otelcol_build_finish adds it to $LOG.
otelcol_build_start() {
    require_go "the OpenTelemetry Collector"
    log "building the OpenTelemetry Collector of tools/otelcol in the background (output in $LOG)"
    mkdir -p "$OTELCOL_BIN"
    OTELCOL_BUILD_HASH="$(otelcol_source_hash)"
    # A process group of its own (setsid keeps the subshell's pid; --wait keeps go's exit
    # status should it fork), so that otelcol_build_stop ends go and the compilers it runs.
    (cd "$ROOT/tools/otelcol" \
        && exec setsid --wait go build -buildvcs=false -o "$OTELCOL_BIN/otelcol.new" .) \
        >"$OTELCOL_BIN/build.log" 2>&1 </dev/null &
    OTELCOL_BUILD_PID=$!
}

# Waits for the build of otelcol_build_start (in the shell that started it) and installs the
# binary; fails, showing the build's last lines, when the build failed.
otelcol_build_finish() {
    local status=0
    if kill -0 "$OTELCOL_BUILD_PID" 2>/dev/null; then
        log "waiting for the OpenTelemetry Collector's build"
    fi
    wait "$OTELCOL_BUILD_PID" || status=$?
    OTELCOL_BUILD_PID=""
    cat "$OTELCOL_BIN/build.log" >>"$LOG"
    if [ "$status" -ne 0 ]; then
        printf 'failed (exit %d); the last lines of its output:\n' "$status" >&2
        tail -n 25 "$OTELCOL_BIN/build.log" | sed 's/^/    /' >&2
        die "could not build the OpenTelemetry Collector (log: $LOG)"
    fi
    rm -f "$OTELCOL_BIN/build.log"
    mv "$OTELCOL_BIN/otelcol.new" "$OTELCOL_BIN/otelcol"
    echo "$OTELCOL_BUILD_HASH" >"$OTELCOL_BIN/otelcol.sha256"
}

# Ends a build still under way (an `up` that fails before otelcol_up waited for it).
otelcol_build_stop() {
    [ -n "$OTELCOL_BUILD_PID" ] || return 0
    # Before its setsid, the subshell has no group of its own yet.
    kill -- -"$OTELCOL_BUILD_PID" 2>/dev/null || kill "$OTELCOL_BUILD_PID" 2>/dev/null || true
    wait "$OTELCOL_BUILD_PID" 2>/dev/null || true
    OTELCOL_BUILD_PID=""
}

# The collector answers once its OTLP HTTP receiver takes an (empty) export request and its
# gRPC receiver takes connections.
otelcol_answers() {
    otelcol_running || return 1
    curl -sf --max-time 2 -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' \
        "http://127.0.0.1:$((OTELCOL_PORT + 1))/v1/traces" || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$OTELCOL_PORT") 2>/dev/null
}

otelcol_up() {
    local home="$DIR/otelcol"
    mkdir -p "$home"
    if otelcol_running; then
        log "otelcol already running on 127.0.0.1:$OTELCOL_PORT"
    else
        # Started by `up` before the other services; else (called on its own) started here.
        [ -n "$OTELCOL_BUILD_PID" ] || ! otelcol_needs_build || otelcol_build_start
        [ -z "$OTELCOL_BUILD_PID" ] || otelcol_build_finish
        local binary="$OTELCOL_BIN/otelcol"
        require_free_port otelcol "$OTELCOL_PORT"
        require_free_port otelcol "$((OTELCOL_PORT + 1))"
        sed -e "s|@GRPC_PORT@|$OTELCOL_PORT|g" -e "s|@HTTP_PORT@|$((OTELCOL_PORT + 1))|g" \
            -e "s|@SPANS_FILE@|$home/spans.jsonl|g" \
            "$ROOT/tools/otelcol/config.yaml.template" >"$home/config.yaml"
        log "starting the OpenTelemetry Collector on 127.0.0.1:$OTELCOL_PORT (OTLP gRPC) and 127.0.0.1:$((OTELCOL_PORT + 1)) (OTLP HTTP)"
        started otelcol
        spawn "$home/otelcol.pid" "$home/server.log" "$binary" --config "$home/config.yaml"
    fi
    wait_until otelcol 120 otelcol_answers
}

otelcol_down() { stop_pidfile otelcol "$DIR/otelcol/otelcol.pid"; }

# --- commands ---------------------------------------------------------------

print_env() {
    local service
    for service in "$@"; do
        local name="${service//-/_}"
        if "${name}_running"; then
            printf 'FANOUT_TEST_%s_URL=%s\n' "${name^^}" "$("${name}_url")"
            if declare -F "${name}_env" >/dev/null; then "${name}_env"; fi
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

# The servers listen on ports inside Linux's range of clients' source ports
# (ip_local_port_range), so a client connection can hold one of them as its source port while
# the server is down, and the server cannot bind it again when it restarts (seen when the
# chaos run restarted Elasticsearch under load). Reserving them keeps them for the servers;
# where the setting cannot be written (no root, a read-only /proc), a restart may retry.
RESERVED_PORTS_FILE=/proc/sys/net/ipv4/ip_local_reserved_ports

# The ports the servers of the services $@ listen on, one a line (a service's own and those of
# the servers it needs).
service_ports() {
    local service
    for service in "$@"; do
        case "$service" in
            postgres) echo "$PG_PORT" ;;
            postgres-replica) printf '%s\n' "$PG_PORT" "$PG_REPLICA_PORT" ;;
            postgres-shard-a) echo "$PG_SHARD_A_PORT" ;;
            postgres-shard-a-replica) printf '%s\n' "$PG_SHARD_A_PORT" "$PG_SHARD_A_REPLICA_PORT" ;;
            postgres-shard-b) echo "$PG_SHARD_B_PORT" ;;
            # The nodes listen in network namespaces of their own; etcd in this one.
            postgres-ha) printf '%s\n' "$PG_HA_ETCD_PORT" "$((PG_HA_ETCD_PORT + 1))" ;;
            redis) echo "$REDIS_PORT" ;;
            # A cluster node also listens on its port + 10000, the cluster bus.
            redis-cluster) redis_cluster_ports; seq $((REDIS_CLUSTER_PORT + 10000)) $((REDIS_CLUSTER_PORT + 10005)) ;;
            mongodb) printf '%s\n' "$PG_PORT" "$MONGODB_PORT" ;;
            elasticsearch) printf '%s\n' "$ELASTICSEARCH_PORT" "$((ELASTICSEARCH_PORT + 100))" ;;
            influxdb) printf '%s\n' "$INFLUXDB_PORT" "$((INFLUXDB_PORT + 2))" ;;
            influxdb-auth) printf '%s\n' "$INFLUXDB_AUTH_PORT" "$((INFLUXDB_AUTH_PORT + 2))" ;;
            kafka) printf '%s\n' "$KAFKA_PORT" "$((KAFKA_PORT + 1))" ;;
            otelcol) printf '%s\n' "$OTELCOL_PORT" "$((OTELCOL_PORT + 1))" ;;
        esac
    done
}

# The ports of a list in the kernel's format ("46400-46405,48533"), one a line.
expand_ports() {
    local item IFS=,
    for item in $1; do
        if [[ $item == *-* ]]; then seq "${item%-*}" "${item#*-}"; elif [ -n "$item" ]; then echo "$item"; fi
    done
}

# Ports, one a line on stdin, as a list in the kernel's format: sorted, consecutive ports as ranges.
compact_ports() {
    sort -n -u | awk 'NF == 0 { next }
        n && $1 == prev + 1 { prev = $1; next }
        n { printf "%s%s%s", sep, start, (prev > start ? "-" prev : ""); sep = "," }
        { start = prev = $1; n = 1 }
        END { if (n) printf "%s%s%s", sep, start, (prev > start ? "-" prev : ""); print "" }'
}

# The ports of $2 (one a line) that the kernel's list $1 does not hold, one a line.
ports_missing() {
    grep -vxF -f <(expand_ports "$1"; echo) <<<"$2" | grep -v '^$' || true
}

# The kernel's list $1 without the ports of $2 (one a line), in the kernel's format.
ports_without() {
    expand_ports "$1" | { grep -vxF -f <(echo "$2"; echo) || true; } | compact_ports
}

# The servers listen on ports inside Linux's range of clients' source ports
# (ip_local_port_range), so a client connection can hold one of them as its source port while
# the server is down, and the server cannot bind it again when it restarts (seen when the
# chaos run restarted Elasticsearch under load). Reserving them keeps them for the servers;
# where the setting cannot be written (no root, a read-only /proc), a restart may retry.
# Only the ports of the services $@ not yet reserved are added, and recorded in
# $DIR/reserved-ports for `down`.
reserve_ports() {
    [ -w "$RESERVED_PORTS_FILE" ] || return 0
    local current missing
    current="$(cat "$RESERVED_PORTS_FILE")"
    missing="$(ports_missing "$current" "$(service_ports "$@")")"
    [ -n "$missing" ] || return 0
    local wanted
    wanted="$(printf '%s\n%s\n' "$(expand_ports "$current")" "$missing" | compact_ports)"
    if echo "$wanted" >"$RESERVED_PORTS_FILE" 2>/dev/null; then
        echo "$missing" >>"$DIR/reserved-ports"
    fi
}

# Gives back the ports `up` reserved, once none of the servers runs: a server stopped to be
# started again keeps its ports.
release_ports() {
    local record="$DIR/reserved-ports" service
    [ -f "$record" ] || return 0
    for service in "${ALL_SERVICES[@]}"; do
        if "${service//-/_}_running"; then return 0; fi
    done
    if [ -w "$RESERVED_PORTS_FILE" ]; then
        local remaining
        remaining="$(ports_without "$(cat "$RESERVED_PORTS_FILE")" "$(cat "$record")")"
        echo "$remaining" >"$RESERVED_PORTS_FILE" 2>/dev/null || return 0
    fi
    rm -f "$record"
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
            resume_stopped=true
            reserve_ports "${services[@]}"
            # The collector's build overlaps the other services' start (they mostly wait on
            # their servers); an `up` that fails or is stopped first ends it.
            trap otelcol_build_stop EXIT
            trap 'exit 143' TERM INT
            case " ${services[*]} " in
                *" otelcol "*) otelcol_running || ! otelcol_needs_build || otelcol_build_start ;;
            esac
            for service in "${services[@]}"; do "${service//-/_}_up"; done
            print_env "${services[@]}"
            ;;
        down)
            # In reverse: a replica stops before its primary.
            for ((i = ${#services[@]} - 1; i >= 0; i--)); do "${services[i]//-/_}_down"; done
            release_ports
            ;;
        status)
            for service in "${services[@]}"; do
                if "${service//-/_}_running"; then
                    echo "$service: running at $("${service//-/_}_url")"
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

# Sourced (by the tests), it only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
