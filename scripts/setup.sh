# Sourced by the other scripts: puts the Lambda Runtime API emulator (pip
# `cargo-lambda`), the DynamoDB/S3 stand-in (pip `moto[server]`) and the template
# linters (pip `cfn-lint`, `aws-sam-cli`) into the project's .venv, exports
# CARGO_LAMBDA for the tests, and (with SETUP_BROWSER=1) installs Debian's chromium
# for the HTML page check.
# `--no-deps` for cargo-lambda skips the 400 MB zig toolchain, which running (not
# cross-building) needs not.
CARGO_LAMBDA_VERSION=1.9.2
MOTO_VERSION=5.2.5
CFN_LINT_VERSION=1.58.0
SAM_CLI_VERSION=1.170.0
ZIGLANG_VERSION=0.13.0
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
if [ "${SETUP_LINTERS:-0}" = 1 ] && [ ! -x .venv/bin/sam ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check "cfn-lint==${CFN_LINT_VERSION}" "aws-sam-cli==${SAM_CLI_VERSION}"
fi
# `sam build` (rust-cargolambda) cross-links the arm64 function with cargo-lambda's zig.
if [ "${SETUP_SAM_BUILD:-0}" = 1 ]; then
  if ! .venv/bin/python -c 'import ziglang' 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check "ziglang==${ZIGLANG_VERSION}"
  fi
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || rustup target add aarch64-unknown-linux-gnu
fi
if [ "${SETUP_BROWSER:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export CARGO_LAMBDA="$PWD/.venv/bin/cargo-lambda"
