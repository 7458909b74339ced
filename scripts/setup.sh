# Sourced by the other scripts: puts the Lambda Runtime API emulator (pip
# `cargo-lambda`) into the project's .venv and exports CARGO_LAMBDA for the tests.
# `--no-deps` skips the 400 MB zig toolchain, which running (not cross-building) needs not.
CARGO_LAMBDA_VERSION=1.9.2
if [ ! -x .venv/bin/cargo-lambda ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv .venv
  fi
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "cargo-lambda==${CARGO_LAMBDA_VERSION}"
fi
export CARGO_LAMBDA="$PWD/.venv/bin/cargo-lambda"
