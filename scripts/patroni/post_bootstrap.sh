#!/usr/bin/env bash
# Run by Patroni once, on the node that bootstraps the cluster, with a superuser's connection
# string: creates the database the gateway uses.
set -euo pipefail
psql "$1" -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE fanout"
