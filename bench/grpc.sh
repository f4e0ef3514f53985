#!/usr/bin/env bash
# gRPC: unary ModelInfer (the iris model on MLServer 1.7, scikit-learn runtime) straight to
# MLServer's gRPC port vs through moat (API key, scope, the OIP proto, framing checked), with
# h2load: h2c, one connection per client, one stream at a time. Prints req/s, p50/p99 per
# call and moat's CPU per call; and, for scale, moat's CPU per call of the same inference
# over REST (HTTP/1.1 JSON, same rate). moat on core 0, MLServer on core 1.
# Needs: h2load (Debian's nghttp2-client) and .venv-grpc (scripts/test makes it).
# Usage: bench/grpc.sh [requests=3000] [clients=4]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-3000}
CLIENTS=${2:-4}
PY=.venv-grpc/bin/python
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_moat

mkdir -p "$WORK/models/iris"
"$PY" - "$WORK" <<'PY'
import json, struct, sys, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
import tritonclient.grpc.service_pb2 as pb
work = sys.argv[1]
X, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=1000).fit(X, y), f"{work}/models/iris/model.joblib")
json.dump({"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
           "parameters": {"uri": "./model.joblib", "version": "v1"}},
          open(f"{work}/models/iris/model-settings.json", "w"))
json.dump({"host": "127.0.0.1", "http_port": 18180, "grpc_port": 18181, "metrics_port": 18182},
          open(f"{work}/models/settings.json", "w"))
request = pb.ModelInferRequest(model_name="iris")
tensor = request.inputs.add(name="input-0", datatype="FP32", shape=[1, 4])
tensor.contents.fp32_contents.extend([5.1, 3.5, 1.4, 0.2])
message = request.SerializeToString()
open(f"{work}/infer.bin", "wb").write(b"\0" + struct.pack(">I", len(message)) + message)
PY
taskset -c 1 .venv-grpc/bin/mlserver start "$WORK/models" >"$WORK/mlserver.log" 2>&1 &
until curl -sf http://127.0.0.1:18180/v2/models/iris/ready >/dev/null; do sleep 0.2; done

KEY=$("$MOAT" keys new --id bench --scopes predict --store "$WORK/keys.yaml" 2>/dev/null)
cat > "$WORK/moat.yaml" <<YAML
listen: 127.0.0.1:18190
admin_listen: 127.0.0.1:18191
limits: {max_requests_per_connection: 100000000}   # h2load does not reconnect after a GOAWAY
upstream: {url: http://127.0.0.1:18180}
grpc: {protos: [examples/grpc/open_inference_grpc.proto], port: 18181}
auth: {schemes: {api_key: {type: api_key, header: X-API-Key, store: $WORK/keys.yaml}}}
policy:
  default: [{api_key: []}]
  operations: {inference.GRPCInferenceService/ModelInfer: [{api_key: [predict]}]}
YAML
MOAT_LOG=warn taskset -c 0 "$MOAT" serve --config "$WORK/moat.yaml" >/dev/null &
MOAT_PID=$!
until curl -sf http://127.0.0.1:18191/readyz >/dev/null; do sleep 0.1; done

# run NAME PORT [HEADER]: h2load's summary to $WORK/NAME.out, one line per call to NAME.log.
run() {
  h2load -n "$REQUESTS" -c "$CLIENTS" -m 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    ${3:+-H "$3"} -d "$WORK/infer.bin" --log-file="$WORK/$1.log" \
    "http://127.0.0.1:$2/inference.GRPCInferenceService/ModelInfer" >"$WORK/$1.out"
}
ticks() { awk '{print $14 + $15}' "/proc/$MOAT_PID/stat"; }
run warmup 18190 "x-api-key: $KEY"
run direct 18181
before=$(ticks)
run moat 18190 "x-api-key: $KEY"
after=$(ticks)
echo '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}' \
  > "$WORK/rest.json"
rest_before=$(ticks)
h2load --h1 -n "$REQUESTS" -c "$CLIENTS" -H 'content-type: application/json' -H "x-api-key: $KEY" \
  -d "$WORK/rest.json" http://127.0.0.1:18190/v2/models/iris/infer >"$WORK/rest.out"
rest_after=$(ticks)
grep -q "$REQUESTS succeeded" "$WORK/rest.out" || { cat "$WORK/rest.out"; exit 1; }

"$PY" - "$WORK" "$REQUESTS" "$before" "$after" "$rest_before" "$rest_after" "$(getconf CLK_TCK)" <<'PY'
import re, sys
work, requests = sys.argv[1], int(sys.argv[2])
before, after, rest_before, rest_after, hz = map(int, sys.argv[3:])
def figures(name):
    out = open(f"{work}/{name}.out").read()
    ok = re.search(r"(\d+) succeeded", out).group(1)
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    times = sorted(int(line.split()[2]) / 1000 for line in open(f"{work}/{name}.log"))
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    return ok, rps, q(0.50), q(0.99)
rows = {name: figures(name) for name in ("direct", "moat")}
for name, (ok, rps, p50, p99) in rows.items():
    print(f"{name:7} {ok} ok  {rps:8.1f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
d, m = rows["direct"], rows["moat"]
cpu = (after - before) / hz * 1000 / requests
print(f"added   p50 {m[2] - d[2]:+.2f} ms  p99 {m[3] - d[3]:+.2f} ms  "
      f"throughput {m[1] / d[1]:.2f}x  moat CPU {cpu * 1000:.0f} us per call")
rest = (rest_after - rest_before) / hz * 1000 / requests
print(f"REST    the same inference through moat (HTTP/1.1 JSON): moat CPU {rest * 1000:.0f} us per call")
PY
