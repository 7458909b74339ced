# Sourced by the other scripts: puts the Lambda Runtime API emulator (pip
# `cargo-lambda`) and the DynamoDB/S3 stand-in (pip `moto[server]`) into the project's
# .venv, and exports CARGO_LAMBDA for the tests.
# `--no-deps` for cargo-lambda skips the 400 MB zig toolchain, which running (not
# cross-building) needs not.
CARGO_LAMBDA_VERSION=1.9.2
MOTO_VERSION=5.2.5
if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv .venv
  fi
fi
if [ ! -x .venv/bin/cargo-lambda ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "cargo-lambda==${CARGO_LAMBDA_VERSION}"
fi
if [ ! -x .venv/bin/moto_server ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
fi
export CARGO_LAMBDA="$PWD/.venv/bin/cargo-lambda"
