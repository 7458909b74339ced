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
target/release/xray-bench target/bench/python.json "$PWD/.venv/bin/python"

# Instructions, not time: the user-space work of each workload as callgrind counts it,
# the same however busy the machine (time on a VM varies by tens of percent, and the
# loopback network's kernel work lands on the calling thread).
if ! command -v valgrind >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
# The median of three runs: what the SDK does at random (hash seeds, ids) moves one
# run's count of the same code by a few hundred instructions per AWS call.
# The three run side by side: a count does not depend on what else the machine does.
count() {
  local runs
  runs=$(mktemp -d)
  for i in 1 2 3; do
    valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/xray-bench \
      --count "$1" >"$runs/$i" 2>&1 &
  done
  wait
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$runs"/* | sort -n | sed -n 2p
  rm -r "$runs"
}
base=$(count none)
# Each workload counted once, less the process's own start; `per W N`: W's count per
# one of its N calls.
declare -A counted
for w in put-item-{plain,ours,lite}{,-unsampled} put-item-floor-{hooks,state} \
  put-large-item-{plain,ours} http-{plain,ours}{,-unsampled} seed-{untraced,traced} \
  {instrument-noop,empty-noop,instrument,empty}-unsampled instrument capture empty; do
  counted[$w]=$(( $(count "$w") - base ))
done
per() { echo $(( ${counted[$1]:?not counted} / $2 )); }
echo
echo "Instructions (user space, callgrind), per AWS call (1,000 PutItem in invocations of 10):"
for sampled in "" "-unsampled"; do
  p=$(per "put-item-plain$sampled" 1000); o=$(per "put-item-ours$sampled" 1000); l=$(per "put-item-lite$sampled" 1000)
  echo "  Sampled=$([ -z "$sampled" ] && echo 1 || echo 0): plain $p; XRayInterceptor +$((o - p)); xray-lite-aws-sdk +$((l - p))"
done
p=$(per put-item-plain 1000)
h=$(per put-item-floor-hooks 1000); s=$(per put-item-floor-state 1000)
echo "  Sampled=1, what the SDK charges any interceptor with the same three hooks: doing nothing +$((h - p)); keeping a value in the call's config bag +$((s - p))"
p=$(per put-large-item-plain 1000); o=$(per put-large-item-ours 1000)
echo "  Sampled=1, a 15 KB item (400 attributes): plain $p; XRayInterceptor +$((o - p))"
echo "Per HTTP GET through reqwest-middleware (1,000 in invocations of 10):"
for sampled in "" "-unsampled"; do
  p=$(per "http-plain$sampled" 1000); o=$(per "http-ours$sampled" 1000)
  echo "  Sampled=$([ -z "$sampled" ] && echo 1 || echo 0): plain $p; XRayMiddleware +$((o - p))"
done
u=$(per seed-untraced 100); t=$(per seed-traced 100)
echo "Per seed invocation (5 subsegments, 2 AWS calls): untraced $u, traced $t (+$((t - u)))"
# 10,000 calls in invocations of 100, less the same invocations without calls.
call() { echo $(( ($(per "$1" 1) - $(per "$2" 1)) / 10000 )); }
echo "Per call of a one-line function (10,000 in invocations of 100):"
alone=$(call instrument-noop-unsampled empty-noop-unsampled)
layer=$(call instrument-unsampled empty-unsampled)
echo "  Sampled=0: #[instrument], tracing alone $alone; with XRayTracingLayer $layer ($(( (layer - alone) * 100 / alone ))% more)"
inst=$(call instrument empty); capt=$(call capture empty)
echo "  Sampled=1: #[capture] $capt; #[instrument] with XRayTracingLayer $inst ($(awk "BEGIN { printf \"%.3f\", $inst / $capt }")x #[capture])"
