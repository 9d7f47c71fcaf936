#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use is up: TEST_DATABASE_URL, or
# postgres://postgres@127.0.0.1:5432/test. Starts the local cluster if it is
# down, installs PostgreSQL from Debian's packages if it is missing (as root),
# and creates the `test` database. Fails loudly: PostgreSQL tests never skip.
set -euo pipefail

url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

reachable() { psql "$url" -Atqc 'select 1' >/dev/null 2>&1; }

if command -v psql >/dev/null 2>&1 && reachable; then
  exit 0
fi

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  echo "ensure-postgres: TEST_DATABASE_URL is set but not reachable: ${url%%@*}@…" >&2
  exit 1
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-postgres: PostgreSQL is not installed; run as root or install the postgresql package" >&2
    exit 1
  fi
  echo "ensure-postgres: installing PostgreSQL from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
hba="/etc/postgresql/$version/main/pg_hba.conf"
# Tests connect as postgres over loopback without a password.
if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
  sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
  || pg_ctlcluster --skip-systemctl-redirect "$version" main reload

for _ in $(seq 1 30); do
  if psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then break; fi
  sleep 1
done
psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc "select 1 from pg_database where datname = 'test'" | grep -q 1 \
  || psql "postgres://postgres@127.0.0.1:5432/postgres" -qc 'create database test'

if ! reachable; then
  echo "ensure-postgres: PostgreSQL at 127.0.0.1:5432 is still not reachable" >&2
  exit 1
fi
