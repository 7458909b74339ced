#!/usr/bin/env bash
# The server-side example end to end on this machine: builds examples/orders-service and
# xray-local, starts moto_server as DynamoDB (with the orders table), xray-local as the
# X-Ray daemon, and the service sampling by examples/orders-service/sampling-rules.json;
# sends a few requests (orders, an invalid order, health checks, one carrying a caller's
# sampled trace header), prints each response and the traces, and stops everything it
# started. Output files go to target/demo-orders/ (traces.jsonl, trace.html).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
out=$PWD/target/demo-orders
mkdir -p "$out"
rm -f "$out/traces.jsonl"

cargo build --quiet -p orders-service -p xray-local

. scripts/demo-common.sh

moto_port=$(free_port); daemon_port=$(free_port); service_port=$(free_port)
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$out/moto.log" 2>&1 & pids+=($!)
wait_port "$moto_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port TABLE_NAME=orders
.venv/bin/python - <<'PY'
import boto3, os
boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1").create_table(
    TableName=os.environ["TABLE_NAME"], BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": "orderId", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "orderId", "KeyType": "HASH"}])
PY

target/debug/xray-local listen --address "127.0.0.1:$daemon_port" --jsonl "$out/traces.jsonl" >"$out/xray-local.log" 2>&1 & pids+=($!)
# xray-local has no sampling API: the service says so once and samples by the file.
ORDERS_ADDR=127.0.0.1:$service_port AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:$daemon_port \
XRAY_LAMBDA_SAMPLING_RULES=examples/orders-service/sampling-rules.json \
  target/debug/orders-service >"$out/service.log" 2>&1 & pids+=($!)
wait_port "$service_port"

.venv/bin/python - "$service_port" <<'PY'
import json, sys, urllib.request, urllib.error
base = f"http://127.0.0.1:{sys.argv[1]}"
def send(method, path, body=None, header=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if header:
        req.add_header("X-Amzn-Trace-Id", header)
    try:
        r = urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        r = e
    print(f"{method} {path} -> HTTP {r.status} {r.read().decode()!s:40.40} "
          f"X-Amzn-Trace-Id: {r.headers['X-Amzn-Trace-Id']}")
send("POST", "/orders", {"customerId": "c-1", "items": ["book", "pen"]})
send("POST", "/orders", {"customerId": "c-2", "items": ["lamp"]})
send("POST", "/orders", {"customerId": "", "items": []})
for _ in range(3):
    send("GET", "/health")
send("GET", "/health", header="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
PY
sleep 0.5

echo
echo "=== What the service logged"
cat "$out/service.log"
echo
echo "=== What xray-local received (every document checked against the schema)"
cat "$out/xray-local.log"
echo
echo "=== The traces"
target/debug/xray-local show "$out/traces.jsonl" --html "$out/trace.html"
echo
echo "Timelines and the service map: $out/trace.html"
