#!/usr/bin/env bash
# Builds Docker Compose v5 (the Go program behind `docker compose`) from the Go module proxy
# when it is not built yet, and prints the path of its binary. The binary is kept with the
# servers' builds ($FANOUT_SERVICES_DIR/bin, default .services/bin), and Go's own module and
# build caches make a rebuild quick.
#
#   scripts/compose-v5.sh      prints e.g. .services/bin/docker-compose-v5.6.0
#
# `go install …@version` refuses the module (its go.mod has exclude directives), so the
# command is built from a module of our own that requires it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FANOUT_SERVICES_DIR:-$ROOT/.services}"
COMPOSE_VERSION=v5.6.0
COMPOSE_MODULE=github.com/docker/compose/v5

log() { printf '[compose-v5] %s\n' "$*" >&2; }
die() { printf '[compose-v5] error: %s\n' "$*" >&2; exit 1; }

compose_binary() {
    local binary="$DIR/bin/docker-compose-$COMPOSE_VERSION" build="$DIR/build/compose-$COMPOSE_VERSION"
    if [ ! -x "$binary" ]; then
        command -v go >/dev/null || die "Go is needed to build Docker Compose (https://go.dev/dl/)"
        log "building Docker Compose $COMPOSE_VERSION (a few minutes, once)"
        rm -rf "$build"
        mkdir -p "$build" "$DIR/bin"
        (
            cd "$build"
            go mod init fanout.local/compose
            go get "$COMPOSE_MODULE/cmd@$COMPOSE_VERSION"
            go build -trimpath -ldflags "-X $COMPOSE_MODULE/internal.Version=$COMPOSE_VERSION" \
                -o "$binary.partial" "$COMPOSE_MODULE/cmd"
        ) >"$build.log" 2>&1 || { tail -30 "$build.log" >&2; die "building Docker Compose $COMPOSE_VERSION failed"; }
        mv "$binary.partial" "$binary"
        rm -rf "$build" "$build.log"
    fi
    echo "$binary"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    compose_binary
fi
