#!/usr/bin/env bash
# From a fresh machine to a placed order: install the gateway, start a local PostgreSQL,
# create and migrate its database, place a demo order and relay it to the configured sinks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/bootstrap.sh
bash scripts/services.sh up postgres >/dev/null
.venv/bin/fanout migrate --create-database
.venv/bin/fanout demo
.venv/bin/fanout relay --until-idle
.venv/bin/fanout status
