#!/usr/bin/env bash
# A traced function under the Lambda Runtime API emulator, with a UDP listener as the
# X-Ray daemon: prints each response and the documents the function sent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo build --quiet -p xray-lambda-e2e --bins
exec target/debug/demo
