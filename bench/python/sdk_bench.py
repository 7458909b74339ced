"""Per-call cost of the official Python SDK's @xray_recorder.capture on a no-op, in a
simulated Lambda (LAMBDA_TASK_ROOT and _X_AMZN_TRACE_ID set), sending UDP to a loopback
sink. Prints JSON: {"sampled_ns": …, "unsampled_ns": …}."""
import json
import os
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
threading.Thread(target=lambda: [sink.recv(70000) for _ in iter(int, 1)], daemon=True).start()

os.environ["LAMBDA_TASK_ROOT"] = "/tmp"
os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "bench"
os.environ["AWS_XRAY_DAEMON_ADDRESS"] = "127.0.0.1:%d" % sink.getsockname()[1]
os.environ["AWS_XRAY_CONTEXT_MISSING"] = "IGNORE_ERROR"

from aws_xray_sdk.core import xray_recorder  # noqa: E402


@xray_recorder.capture("noop")
def noop():
    pass


def median_per_call(call, n, rounds=9, clock=time.perf_counter):
    """Median seconds per `call()` by `clock`, over `rounds` rounds of `n` calls after one
    round of warm-up."""
    for _ in range(n):
        call()
    samples = []
    for _ in range(rounds):
        t = clock()
        for _ in range(n):
            call()
        samples.append((clock() - t) / n)
    return statistics.median(samples)


def per_call(sampled):
    os.environ["_X_AMZN_TRACE_ID"] = (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=%d" % int(sampled)
    )
    return median_per_call(noop, 5000) * 1e9


class DynamoDBStub(BaseHTTPRequestHandler):
    """Answers every request with `{}` on a kept-alive connection, like the Rust bench's."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        # One write: headers and body in separate segments would wait on delayed ACKs.
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"x-amzn-RequestId: bench\r\nContent-Length: 2\r\n\r\n{}"
        )

    def log_message(self, *args):
        pass


def put_item_cpu_us(client):
    """Median CPU time of this thread per PutItem, in µs: the caller's own work, without
    the stub's thread or the wait for it."""
    def call():
        client.put_item(TableName="users-table", Item={"userId": {"S": "u-1"}})

    return median_per_call(call, 100, clock=time.thread_time) * 1e6


def put_item_costs():
    """PutItem before and after `patch(["botocore"])`, Sampled=1. The patch is
    process-wide and cannot be undone, so the plain rounds come first."""
    import boto3

    server = ThreadingHTTPServer(("127.0.0.1", 0), DynamoDBStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["_X_AMZN_TRACE_ID"] = (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:%d" % server.server_address[1],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    plain = put_item_cpu_us(client)
    from aws_xray_sdk.core import patch

    patch(["botocore"])
    patched = put_item_cpu_us(client)
    server.shutdown()
    return plain, patched


result = {"sampled_ns": per_call(True), "unsampled_ns": per_call(False)}
result["put_item_plain_us"], result["put_item_patched_us"] = put_item_costs()
print(json.dumps(result))
