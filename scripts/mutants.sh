#!/usr/bin/env bash
# Mutation testing of the domain rules (validation, merge semantics,
# parsing): cargo-mutants changes one piece of src/domain/ at a time and
# runs the unit tests; a mutant that no test notices is a rule no test
# guards. Not part of CI (it builds the crate once per mutant). Installs
# cargo-mutants from crates.io when missing. Extra arguments go to
# cargo mutants (e.g. --file src/domain/validate.rs).
# Report: mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
    cargo install --locked cargo-mutants
fi
# Only the unit tests: they are the domain's tests, and the HTTP tests
# need PostgreSQL and take ten times as long per mutant.
exec cargo mutants --no-shuffle --file 'src/domain/*.rs' "$@" -- --lib
