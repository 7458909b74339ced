#!/usr/bin/env bash
# What tracing costs, side by side on this machine in one run: this crate, xray-lite and
# xray-lite-aws-sdk (crates.io) and the official Python SDK (aws-xray-sdk from PyPI, with
# boto3 from the test venv), per call, per AWS SDK call and at cold start. Release
# builds; takes a couple of minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
if ! .venv/bin/python -c 'import aws_xray_sdk' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "aws-xray-sdk==2.15.0"
fi
cargo build --quiet --release -p xray-bench --bins
mkdir -p target/bench
.venv/bin/python bench/python/sdk_bench.py > target/bench/python.json
exec target/release/xray-bench target/bench/python.json "$PWD/.venv/bin/python"
