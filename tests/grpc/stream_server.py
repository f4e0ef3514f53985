"""A real grpcio server of stream.proto's `demo.v1.Stream` for tests/grpc.rs: messages are
raw bytes (see wire.py). It appends what it saw — each call's metadata, a cancellation — to
the log file named on the command line, as JSON lines.

    python stream_server.py PORT LOG
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc

from wire import decode, encode

PORT, LOG = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


def log(event):
    with lock, open(LOG, "a") as f:
        f.write(json.dumps(event) + "\n")


def seen(method, context):
    metadata = {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}
    log({"method": method, "metadata": metadata, "time_remaining": context.time_remaining()})


def count(request, context):
    seen("Count", context)
    fields = decode(request)
    for i in range(fields.get(1, 0)):
        yield encode(value=i + 1)
        time.sleep(fields.get(2, 0) / 1000)


def echo(requests, context):
    seen("Echo", context)
    for message in requests:
        yield message


def total(requests, context):
    seen("Sum", context)
    return encode(value=sum(decode(m).get(1, 0) for m in requests))


def wait(request, context):
    seen("Wait", context)
    ended = threading.Event()
    context.add_callback(ended.set)
    # The callback runs when the call ends: before this returns, only a cancel ends it.
    if ended.wait(30):
        log({"method": "Wait", "event": "cancelled"})
    return encode(value=1)


handler = grpc.method_handlers_generic_handler(
    "demo.v1.Stream",
    {
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Echo": grpc.stream_stream_rpc_method_handler(echo),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
        "Wait": grpc.unary_unary_rpc_method_handler(wait),
    },
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port(f"127.0.0.1:{PORT}")
server.start()
print("ready", flush=True)
server.wait_for_termination()
