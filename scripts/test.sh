#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): install test
# dependencies, then run every test target. Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "+ cargo fmt --all --check"
cargo fmt --all --check

echo "+ cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "+ cargo test --all-targets"
cargo test --all-targets
