#!/usr/bin/env bash
# Packages the published crates as crates.io would receive them, unpacks the .crate
# files outside the workspace, and builds and runs the packaged crates' own tests
# there, each seeing the others as unpacked too (not the workspace): what a user of
# the published crates gets must build and pass on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="xray-lambda"))')
cargo package --quiet -p xray-macros -p xray-local -p xray-lambda --no-verify --allow-dirty
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for crate in xray-macros xray-local xray-lambda; do
  tar -xzf "$root/target/package/$crate-$version.crate" -C "$dir"
done
# The workspace's lock file: the same dependency versions as the workspace build, on
# every run (the MSRV check covers what the lock holds); its builds are reused where the
# package asks for the same features.
for crate in xray-local xray-lambda; do
  cp "$root/Cargo.lock" "$dir/$crate-$version/Cargo.lock"
done
mkdir -p "$dir/.cargo"
cat > "$dir/.cargo/config.toml" <<TOML
[patch.crates-io]
xray-macros = { path = "xray-macros-$version" }
xray-local = { path = "xray-local-$version" }
TOML
# The workspace's target directory: dependencies built for the workspace are reused.
export CARGO_TARGET_DIR="$root/target"
(cd "$dir/xray-local-$version" && cargo test --quiet)
# Every test target but the compile-fail UI cases, which the workspace run covers
# (trybuild builds a project of its own, which would not see the unpacked crates).
tests=()
for t in "$dir/xray-lambda-$version"/tests/*.rs; do
  name=$(basename "$t" .rs)
  [ "$name" = ui ] || tests+=(--test "$name")
done
(cd "$dir/xray-lambda-$version" && cargo test --quiet --all-features --lib "${tests[@]}" \
  && cargo test --quiet --all-features --doc)
