#!/usr/bin/env bash
# The whole test suite: unit tests and the HTTP-level tests on SQLite and
# PostgreSQL. Brings PostgreSQL up first; any extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
# The benchmark's load generator has no tests; build it so it cannot rot,
# and keep the test run's last line the suite's own result.
cargo build --quiet --examples
cargo test --lib --bins --tests "$@"
