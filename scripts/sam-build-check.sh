#!/usr/bin/env bash
# Deploying as the README says must work: runs `sam build` on template.yaml (SAM's
# rust-cargolambda build method: cargo-lambda, cross-linking with zig, both from PyPI in
# .venv) and checks the artifact is an aarch64 ELF executable named bootstrap. The build
# is unoptimized (opt-level 0) to keep CI short: it checks the path from template to
# artifact, not code generation, which the release profile is not changed for.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_LINTERS=1 SETUP_SAM_BUILD=1 . scripts/setup.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
PATH="$PWD/.venv/bin:$PATH" SAM_CLI_TELEMETRY=0 \
  CARGO_TARGET_DIR="$PWD/target/sam" CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
  .venv/bin/sam build --build-dir "$out/build" >"$out/sam.log" 2>&1 \
  || { cat "$out/sam.log"; exit 1; }
.venv/bin/python - "$out/build/ProcessUserFunction/bootstrap" <<'PY'
import os, struct, sys
path = sys.argv[1]
with open(path, "rb") as f:
    head = f.read(20)
assert head[:4] == b"\x7fELF", f"{path}: not an ELF file"
assert head[4] == 2, f"{path}: not 64-bit"
e_type, e_machine = struct.unpack("<HH", head[16:20])
assert e_machine == 183, f"{path}: machine {e_machine}, not aarch64 (183)"
assert e_type in (2, 3), f"{path}: ELF type {e_type} is not an executable"
assert os.access(path, os.X_OK), f"{path}: not executable"
print(f"sam build: {path} is an aarch64 ELF executable ({os.path.getsize(path)} bytes)")
PY
