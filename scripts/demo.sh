#!/usr/bin/env bash
# The seed app end to end on this machine: builds examples/process-user and xray-local,
# starts moto_server as DynamoDB and S3 (with the table and the bucket), a small HTTP
# service the function notifies of new users (NOTIFY_URL), xray-local as the X-Ray
# daemon and `cargo lambda watch` as the Lambda Runtime API, invokes the
# function with the sample events, prints each response and the traces, and stops
# everything it started. Output files go to target/demo/ (traces.jsonl, trace.html).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
root=$PWD
out=$root/target/demo
mkdir -p "$out"
rm -f "$out/traces.jsonl"

cargo build --quiet -p process-user -p xray-local

. scripts/demo-common.sh

moto_port=$(free_port); daemon_port=$(free_port); api_port=$(free_port)
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$out/moto.log" 2>&1 & pids+=($!)
wait_port "$moto_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port TABLE_NAME=users-table BUCKET_NAME=user-files
.venv/bin/python - <<'PY'
import boto3, os
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
boto3.client("dynamodb", **kw).create_table(
    TableName=os.environ["TABLE_NAME"], BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": "userId", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "userId", "KeyType": "HASH"}])
boto3.client("s3", **kw).create_bucket(Bucket=os.environ["BUCKET_NAME"])
PY

notify_port=$(free_port)
.venv/bin/python - "$notify_port" >"$out/notify.log" 2>&1 <<'PY' & pids+=($!)
import http.server, sys
class Notified(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print("notified; X-Amzn-Trace-Id:", self.headers.get("X-Amzn-Trace-Id"), flush=True)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Notified).serve_forever()
PY
wait_port "$notify_port"
export NOTIFY_URL=http://127.0.0.1:$notify_port/users

target/debug/xray-local listen --address "127.0.0.1:$daemon_port" --jsonl "$out/traces.jsonl" >"$out/xray-local.log" 2>&1 & pids+=($!)
(cd examples/process-user && exec "$CARGO_LAMBDA" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$api_port" >"$out/emulator.log" 2>&1) & pids+=($!)
wait_port "$api_port"
AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:$api_port/.rt AWS_LAMBDA_FUNCTION_NAME=process-user \
AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_FUNCTION_VERSION=1 POWERTOOLS_SERVICE_NAME=process-user \
AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:$daemon_port target/debug/process-user >"$out/function.log" 2>&1 & pids+=($!)

for event in create-user invalid-body missing-body; do
  echo "=== POST /users with examples/process-user/events/$event.json"
  .venv/bin/python - "$api_port" "examples/process-user/events/$event.json" <<'PY'
import json, sys, urllib.request
port, path = sys.argv[1], sys.argv[2]
req = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/_/invocations",
                             data=open(path, "rb").read(), method="POST")
response = json.load(urllib.request.urlopen(req, timeout=60))
print(f"HTTP {response['statusCode']}: {response['body']}")
PY
done
sleep 0.5

echo
echo "=== What xray-local received (every document checked against the schema)"
cat "$out/xray-local.log"
echo
echo "=== The traces"
target/debug/xray-local show "$out/traces.jsonl" --html "$out/trace.html"
