#!/usr/bin/env bash
# From a fresh machine to orders in every store: install the gateway, start PostgreSQL and the
# stores, migrate, place demo orders and walk one through its life, relay them, and show with
# `fanout verify` that every store holds what PostgreSQL holds.
#
#   scripts/quickstart.sh            PostgreSQL, MongoDB (FerretDB), Redis, Elasticsearch,
#                                    InfluxDB and Kafka (config/stores.yaml)
#   scripts/quickstart.sh --minimal  PostgreSQL only, the in-process memory sink
#                                    (config/gateway.yaml)
#
# Safe to run again: what is installed and running is kept, and each run adds demo orders.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

minimal=false
case "${1:-}" in
    "") ;;
    --minimal) minimal=true ;;
    *) echo "usage: $0 [--minimal]" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }

step "Installing the gateway into .venv"
bash scripts/bootstrap.sh

if $minimal; then
    config=config/gateway.yaml
    services=(postgres)
    step "Starting PostgreSQL (scripts/services.sh)"
else
    config=config/stores.yaml
    services=(postgres mongodb redis elasticsearch influxdb kafka)
    step "Starting PostgreSQL and the stores (scripts/services.sh)"
    if bash scripts/services.sh status "${services[@]}" | grep -q ': stopped'; then
        echo "A first run installs PostgreSQL and Redis from Debian's packages, builds FerretDB"
        echo "and InfluxDB with Go, and downloads Elasticsearch and Kafka from Maven Central: a"
        echo "few minutes, each step announced below. Later runs take seconds."
    fi
fi
bash scripts/services.sh up "${services[@]}" >/dev/null
export FANOUT_CONFIG="$ROOT/$config"
fanout=(.venv/bin/fanout)

step "Migrating the database"
"${fanout[@]}" migrate --create-database

step "Placing five demo orders and walking the first through its life"
demo="$("${fanout[@]}" demo --orders 5 --walk)"
echo "$demo"
order_id="$(sed -n 's/^walked order [^ ]* (\([0-9a-f-]*\)).*/\1/p' <<<"$demo")"

step "Relaying the outbox to every sink"
"${fanout[@]}" relay --until-idle
"${fanout[@]}" status

step "Comparing every sink with PostgreSQL"
"${fanout[@]}" verify

if $minimal; then
    echo
    echo "The memory sink lives in the relay's process. Run scripts/quickstart.sh without"
    echo "--minimal to see the orders land in MongoDB, Redis, Elasticsearch, InfluxDB and Kafka."
    exit 0
fi

cat <<EOF

Order $order_id, as each store holds it:

  # Redis: the order's JSON summary
  redis-cli -p 56379 GET order:$order_id

  # Elasticsearch: the order's search document
  curl -s 'http://127.0.0.1:59200/orders/_search?q=order_id:$order_id&pretty'

  # MongoDB (FerretDB): the order's document
  .venv/bin/python -c "import pymongo, pprint; pprint.pprint(pymongo.MongoClient('mongodb://127.0.0.1:57017/').fanout.orders.find_one({'_id': '$order_id'}))"

  # InfluxDB: a point per event of the order
  curl -s -G 'http://127.0.0.1:58086/query?db=orders&pretty=true' --data-urlencode "q=SELECT * FROM order_metrics WHERE order_id = '$order_id'"

  # PostgreSQL: the order's history (Kafka's fanout.order topic holds the same events)
  FANOUT_CONFIG=$config .venv/bin/fanout events $order_id

Stop the servers with: scripts/services.sh down
EOF
