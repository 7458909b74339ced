#!/usr/bin/env bash
# Every check and test, on a fresh machine: installs what it needs, then formatting,
# lints, unit, property, doc and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_LINTERS=1 SETUP_BROWSER=1 . scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace
