"""A minimal Python Lambda function speaking the Runtime API, for cold-start comparison.

`xray` imports the X-Ray SDK and patches all libraries first, as a traced function does.
"""
import json
import os
import sys
import urllib.request

if sys.argv[1] == "xray":
    import aws_xray_sdk.core

    aws_xray_sdk.core.patch_all()

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
while True:
    with urllib.request.urlopen(f"{API}/2018-06-01/runtime/invocation/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.load(r)
    reply = urllib.request.Request(
        f"{API}/2018-06-01/runtime/invocation/{request_id}/response",
        data=json.dumps(event).encode(),
        method="POST",
    )
    urllib.request.urlopen(reply).read()
