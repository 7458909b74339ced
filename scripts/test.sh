#!/usr/bin/env bash
# Every check and test, on a fresh machine: installs what it needs, then formatting,
# lints (the workspace, and the library's feature combinations), rustdoc, the MSRV
# check, unit, property, UI, doc and end-to-end tests, the published crates' tests
# from their packages, xray-local's install, and `sam build` of the template.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_LINTERS=1 SETUP_BROWSER=1 . scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The library's optional parts: none, each alone, all.
for features in --no-default-features \
  "--no-default-features --features macros" "--no-default-features --features aws-sdk" \
  "--no-default-features --features tracing-layer" "--no-default-features --features reqwest" \
  "--no-default-features --features http-client" "--no-default-features --features http-server" \
  "--no-default-features --features concurrency-tokio" \
  --all-features; do
  # shellcheck disable=SC2086
  cargo clippy -p xray-lambda --all-targets $features -- -D warnings
done
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet
.venv/bin/python scripts/check-msrv.py
cargo test --workspace
# The server-side demo runs as the README says.
./scripts/demo-orders.sh >/dev/null
./scripts/package-test.sh
# xray-local installs as the README says (debug: reuses this run's build).
install_root=$(mktemp -d)
CARGO_TARGET_DIR=target cargo install --quiet --path xray-local --debug --root "$install_root"
"$install_root/bin/xray-local" --help >/dev/null
rm -rf "$install_root"
./scripts/sam-build-check.sh
