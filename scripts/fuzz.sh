#!/usr/bin/env bash
# Fuzzes the API against its own contract: schemathesis (from PyPI) reads
# /v1/openapi.json of a live server and sends generated valid and invalid
# requests to every operation with an admin token. Fails on any 5xx or on a
# response that does not match the documented schema.
#
#   scripts/fuzz.sh [sqlite|postgres|both] [--max-time SECONDS]
#
# Default: both backends, 120 s each. Only 127.0.0.1 is contacted (PyPI
# once, to install schemathesis into target/fuzz-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

backends=both max_time=120
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then backends=$1; shift; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --max-time) max_time=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$backends" = both ] && backends="sqlite postgres"

venv=target/fuzz-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi
cargo build --quiet --bin customers
bin=target/debug/customers
mkdir -p target/fuzz
export CUSTOMERS_LOG=warn
account=T00000001

status=0
for backend in $backends; do
  url=$(scripts/fresh-database.sh "$backend" fuzz)
  "$bin" migrate --database "$url" > /dev/null
  token=$("$bin" tokens issue --database "$url" --account "$account" --scopes admin:customers \
    --subject fuzz --ttl 7200 | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin" serve --database "$url" --listen "127.0.0.1:$port" --rate-limit 0 > "target/fuzz/serve-$backend.log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null && break; sleep 0.1; done

  # Every operation runs in the demo account; the token is sent everywhere.
  cat > target/fuzz/schemathesis.toml <<EOF
[parameters]
"path.aid" = "$account"
EOF
  echo "== $backend: fuzzing for ${max_time}s" >&2
  if ! timeout $((max_time + 120)) "$venv/bin/schemathesis" --config-file target/fuzz/schemathesis.toml run \
      "http://127.0.0.1:$port/v1/openapi.json" \
      --header "Authorization: Bearer $token" \
      --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}" \
      --max-time "$max_time" --workers 2 --seed 1 --no-color \
      --report junit --report-dir "target/fuzz/report-$backend"; then
    status=1
  fi
  kill "$pid"; wait "$pid" || true
  if grep -q 'panicked' "target/fuzz/serve-$backend.log"; then
    echo "the server panicked, see target/fuzz/serve-$backend.log" >&2; status=1
  fi
done
exit $status
