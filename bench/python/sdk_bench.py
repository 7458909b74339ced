"""Per-call cost of the official Python SDK's @xray_recorder.capture on a no-op, in a
simulated Lambda (LAMBDA_TASK_ROOT and _X_AMZN_TRACE_ID set), sending UDP to a loopback
sink. Prints JSON: {"sampled_ns": …, "unsampled_ns": …}."""
import json
import os
import socket
import statistics
import threading
import time

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


def per_call(sampled, n=5000, rounds=9):
    os.environ["_X_AMZN_TRACE_ID"] = (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=%d" % int(sampled)
    )
    for _ in range(n):
        noop()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            noop()
        samples.append((time.perf_counter() - t) / n)
    return statistics.median(samples) * 1e9


print(json.dumps({"sampled_ns": per_call(True), "unsampled_ns": per_call(False)}))
