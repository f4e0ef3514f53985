"""The gRPC clients of tests/grpc.rs: NVIDIA's official `tritonclient.grpc` for inference,
and grpcio for raw calls and streams. Each command prints one JSON object.

    python client.py infer ADDR KEY|- X1 X2 X3 X4
    python client.py raw ADDR /pkg.Service/Method KEY|- HEX_MESSAGE
    python client.py count ADDR KEY|- N DELAY_MS
    python client.py echo ADDR KEY|- N [BAD_HEX]   (BAD_HEX: sent after the N messages)
    python client.py sum ADDR KEY|- V1 V2 ...       (xHEX: a message as raw bytes)
    python client.py cancel ADDR KEY|-
    python client.py deadline ADDR KEY|- SECONDS
    python client.py tensor ADDR KEY|- SHAPE DATATYPE raw:BYTES|fp32:COUNT [gzip]
"""
import base64
import json
import queue
import sys
import time

import grpc

from wire import decode, encode


def metadata(key):
    return None if key == "-" else [("x-api-key", key)]


def failure(error):
    """An RpcError as JSON: its code, message, trailing metadata and decoded details."""
    out = {"code": error.code().name, "message": error.details(), "trailing": {}}
    for name, value in error.trailing_metadata() or ():
        if name.endswith("-bin"):
            out["trailing"][name] = base64.b64encode(value).decode()
            if name == "grpc-status-details-bin":
                out["details"] = details(value)
        else:
            out["trailing"][name] = value
    return out


def details(value):
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status.FromString(value)
    out = {"code": status.code, "types": [d.type_url for d in status.details]}
    for detail in status.details:
        if detail.type_url.endswith("google.rpc.RetryInfo"):
            retry = error_details_pb2.RetryInfo.FromString(detail.value)
            out["retry_seconds"] = retry.retry_delay.seconds
        if detail.type_url.endswith("google.rpc.BadRequest"):
            bad = error_details_pb2.BadRequest.FromString(detail.value)
            out["fields"] = [v.field for v in bad.field_violations]
    return out


def infer(addr, key, *xs):
    import numpy as np
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(addr)
    tensor = triton.InferInput("input-0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array([[float(x) for x in xs]], dtype=np.float32))
    headers = None if key == "-" else {"x-api-key": key}
    try:
        result = client.infer("iris", [tensor], headers=headers)
        return {"code": "OK", "predict": result.as_numpy("predict").tolist()}
    except InferenceServerException as error:
        return {"code": str(error.status()).removeprefix("StatusCode."), "message": error.message()}


def raw(addr, path, key, hex_message, compression=None):
    with grpc.insecure_channel(addr) as channel:
        call = channel.unary_unary(path)
        gzip = grpc.Compression.Gzip if compression == "gzip" else None
        try:
            response, state = call.with_call(
                bytes.fromhex(hex_message), metadata=metadata(key), timeout=10, compression=gzip
            )
            return {"code": "OK", "response": response.hex()}
        except grpc.RpcError as error:
            return failure(error)


def count(addr, key, n, delay_ms):
    with grpc.insecure_channel(addr) as channel:
        call = channel.unary_stream("/demo.v1.Stream/Count")
        started = time.monotonic()
        values, times = [], []
        try:
            for message in call(encode(n=int(n), delay_ms=int(delay_ms)), metadata=metadata(key)):
                values.append(decode(message).get(1, 0))
                times.append(time.monotonic() - started)
        except grpc.RpcError as error:
            return failure(error)
        return {"code": "OK", "values": values, "times": times}


def echo(addr, key, n, bad=None):
    """Sends the next message only once the previous one came back: a proxy that held the
    request stream until it ended would never answer. `bad` (hex) goes last."""
    outgoing = queue.Queue()
    with grpc.insecure_channel(addr) as channel:
        call = channel.stream_stream("/demo.v1.Stream/Echo")
        responses = call(iter(outgoing.get, None), metadata=metadata(key), timeout=10)
        values = []
        try:
            for i in range(int(n)):
                outgoing.put(encode(value=i + 1))
                values.append(decode(next(responses)).get(1, 0))
            if bad is not None:
                outgoing.put(bytes.fromhex(bad))
            outgoing.put(None)
            values.extend(decode(m).get(1, 0) for m in responses)
        except grpc.RpcError as error:
            return {**failure(error), "values": values}
        return {"code": "OK", "values": values}


def total(addr, key, *values):
    with grpc.insecure_channel(addr) as channel:
        call = channel.stream_unary("/demo.v1.Stream/Sum")
        try:
            messages = [bytes.fromhex(v[1:]) if v.startswith("x") else encode(value=int(v)) for v in values]
            response = call(iter(messages), metadata=metadata(key), timeout=10)
            return {"code": "OK", "value": decode(response).get(1, 0)}
        except grpc.RpcError as error:
            return failure(error)


def cancel(addr, key):
    with grpc.insecure_channel(addr) as channel:
        call = channel.unary_unary("/demo.v1.Stream/Wait")
        future = call.future(encode(n=1), metadata=metadata(key))
        time.sleep(1.0)
        return {"cancelled": future.cancel()}


def deadline(addr, key, seconds):
    with grpc.insecure_channel(addr) as channel:
        call = channel.unary_unary("/demo.v1.Stream/Wait")
        try:
            call(encode(n=1), metadata=metadata(key), timeout=float(seconds))
            return {"code": "OK"}
        except grpc.RpcError as error:
            return failure(error)


def tensor(addr, key, shape, datatype, data, compression=None):
    """A ModelInferRequest for iris built with tritonclient's own protobuf classes, its
    input's data as `raw:N` bytes of raw contents or `fp32:N` typed values. Sent with
    `gzip`, it carries a 4 KiB request id: grpc sends a message that would not shrink
    uncompressed, and a few dozen bytes would not."""
    import tritonclient.grpc.service_pb2 as pb

    request = pb.ModelInferRequest(model_name="iris", id="x" * 4096 if compression else "")
    tensor = request.inputs.add(name="input-0", datatype=datatype, shape=[int(d) for d in shape.split(",")])
    kind, count = data.split(":")
    if kind == "raw":
        request.raw_input_contents.append(b"\0" * int(count))
    else:
        tensor.contents.fp32_contents.extend([1.0] * int(count))
    return raw(addr, "/inference.GRPCInferenceService/ModelInfer", key, request.SerializeToString().hex(), compression)


COMMANDS = {"infer": infer, "raw": raw, "count": count, "echo": echo, "sum": total, "cancel": cancel, "deadline": deadline, "tensor": tensor}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:])))
