#!/usr/bin/env bash
# Prints the URL of an empty database named NAME for a long-run script,
# dropping what an earlier run left: a SQLite file under target/NAME/, or a
# PostgreSQL database on the local server (started if it is down).
#
#   scripts/fresh-database.sh sqlite|postgres NAME
set -euo pipefail
cd "$(dirname "$0")/.."
backend=$1 name=$2
case "$backend" in
  sqlite)
    mkdir -p "target/$name"
    rm -f "target/$name/$name.db" "target/$name/$name.db-wal" "target/$name/$name.db-shm"
    echo "sqlite://$PWD/target/$name/$name.db" ;;
  postgres)
    scripts/ensure-postgres.sh >&2
    psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS customers_$name" \
      -c "CREATE DATABASE customers_$name" >&2
    echo "postgres://postgres@127.0.0.1:5432/customers_$name" ;;
  *) echo "backend must be sqlite or postgres" >&2; exit 2 ;;
esac
