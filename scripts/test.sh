#!/usr/bin/env bash
# The whole test suite: unit tests and the HTTP-level tests on SQLite and
# PostgreSQL. Brings PostgreSQL up first; any extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
cargo test --all-targets "$@"
