#!/usr/bin/env bash
# Large request bodies: a 0.85 MiB numeric tensor (30,000 rows of 4 floats, the iris predict
# body) and a 1 MiB base64 string, through nginx (no checks), the bare hyper pass-through
# (bench/ceiling), moat forwarding only and moat with every check (RS256 bearer + API key +
# scopes + the body's schema + access log) — one pinned core per proxy, the same nginx
# upstream, the same wrk load. Prints req/s, MB/s of body, CPU per request (the proxy's own
# utime + stime from /proc) and p99.
# Needs: wrk, nginx and openssl (Debian: apt-get install wrk nginx-light openssl).
# Usage: bench/large.sh [duration=10s] [connections=4]
# OVERLOAD=1 then runs the tensor with every check at 8, 64 and 256 connections (wrk's
# timeout 2 s), printing goodput (2xx/s), 503s, timeouts and moat's peak RSS: bodies in
# flight are bounded by limits.max_buffered_body_bytes (32 MiB here).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk nginx taskset openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench/large.sh needs $tool" >&2; exit 2; }
done
DURATION=${1:-10s}
CONNECTIONS=${2:-4}
PROXY_CPU=${PROXY_CPU:-0}
OTHER_CPU=${OTHER_CPU:-1}
# shellcheck source=bench/lib.sh
. bench/lib.sh
OUT="$WORK/out"
mkdir "$OUT"
build_moat
cargo build --release --locked --quiet --manifest-path bench/ceiling/Cargo.toml --target-dir target/ceiling
CEILING=target/ceiling/release/moat-bench-ceiling

# The bodies, and the iris spec with its batch limit raised to a batch job's and an
# `encode` operation taking one base64 string (FastAPI's `constr(max_length=…)`).
python3 - "$WORK" "$PWD/tests/fixtures/specs/fastapi-iris.json" <<'PY'
import base64, json, os, sys
work, spec_path = sys.argv[1], sys.argv[2]
rows = ", ".join(f"[{4 + i % 3}.{i % 97}, 3.{i % 10}5, 1.{i % 10}, 0.{i % 7}2]" for i in range(30000))
open(f"{work}/tensor.json", "w").write('{"instances": [' + rows + ']}')
image = base64.b64encode(os.urandom(786432)).decode()
open(f"{work}/base64.json", "w").write(json.dumps({"image": image}))
spec = json.load(open(spec_path))
spec["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"] = 100000
spec["paths"]["/v1/encode"] = {"post": {"operationId": "encode",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["image"], "additionalProperties": False,
        "properties": {"image": {"type": "string", "maxLength": 4194304}}}}}},
    "responses": {"200": {"description": "ok"}}}}
json.dump(spec, open(f"{work}/spec.json", "w"))
PY

upstream_conf '{"predictions":[0]}' 'client_max_body_size 16m;'
# nginx buffers request bodies in memory up to client_body_buffer_size (else to disk).
proxy_conf 'client_max_body_size 16m; client_body_buffer_size 4m;'
cat > "$WORK/moat.yaml" <<CONF
listen: 127.0.0.1:18081
admin_listen: 127.0.0.1:19090
upstream:
  url: http://127.0.0.1:18000
limits: {max_requests_per_connection: 100000, max_body_bytes: 4194304}
CONF
every_check_config
sed -i -e "s|file: .*fastapi-iris.json|file: $WORK/spec.json|" \
  -e "s|limits: {max_requests_per_connection: 100000}|limits: {max_requests_per_connection: 100000, max_body_bytes: 4194304, max_buffered_body_bytes: 33554432}|" \
  "$WORK/moat-full.yaml"

taskset -c "$OTHER_CPU" nginx -c "$WORK/upstream.conf" -p "$WORK" &
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" &
NGINX_MASTER=$!
taskset -c "$PROXY_CPU" "$CEILING" 127.0.0.1:18004 127.0.0.1:18000 &
CEILING_PID=$!
MOAT_LOG=info,moat::access=off taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat.yaml" > "$OUT/moat.log" &
MOAT_PID=$!
taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-full.yaml" > "$OUT/moat-full.log" &
FULL_PID=$!
sleep 1
NGINX_PID=$(pgrep -P "$NGINX_MASTER" | head -1)

script() { # name body-file [auth]
  {
    echo "wrk.method = \"POST\""
    echo "wrk.headers[\"Content-Type\"] = \"application/json\""
    echo "local f = io.open(\"$2\", \"rb\"); wrk.body = f:read(\"*a\"); f:close()"
    if [ -n "${3:-}" ]; then
      echo "wrk.headers[\"Authorization\"] = \"Bearer $TOKEN\""
      echo "wrk.headers[\"X-API-Key\"] = \"$(cat "$WORK/key.txt")\""
    fi
  } > "$WORK/$1.lua"
}
script tensor "$WORK/tensor.json"
script tensor-auth "$WORK/tensor.json" auth
script base64 "$WORK/base64.json"
script base64-auth "$WORK/base64.json" auth

run() { # name pid url script body-file
  local before after requests out="$OUT/${1//\//-}.txt"
  before=$(cpu_ticks "$2")
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/$4.lua" "$3" > "$out"
  after=$(cpu_ticks "$2")
  requests=$(awk '/requests in/ {print $1}' "$out")
  python3 - "$1" "$out" "$requests" "$((after - before))" "$(stat -c %s "$5")" "$(wrk_ms "$out" 99%)" <<'PY'
import re, sys
name, path, requests, ticks, size, p99 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
text = open(path).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
cpu_ms = ticks * 10 / max(requests, 1)
print(f"{name:28} {rps:8.1f} req/s {rps * size / 1e6:7.1f} MB/s  CPU {cpu_ms:6.2f} ms/req ({cpu_ms / (size / 1048576):5.2f} ms/MiB)  p99 {p99} ms"
      + (f"  NON-2xx: {bad.group(1)}" if bad else ""))
PY
}
echo "tensor body: $(stat -c %s "$WORK/tensor.json") bytes; base64 body: $(stat -c %s "$WORK/base64.json") bytes; $CONNECTIONS connections, $DURATION each"
run tensor/nginx "$NGINX_PID" http://127.0.0.1:18080/v1/models/iris:predict tensor "$WORK/tensor.json"
run tensor/hyper-ceiling "$CEILING_PID" http://127.0.0.1:18004/v1/models/iris:predict tensor "$WORK/tensor.json"
run tensor/moat-forwarding "$MOAT_PID" http://127.0.0.1:18081/v1/models/iris:predict tensor "$WORK/tensor.json"
run tensor/moat-every-check "$FULL_PID" http://127.0.0.1:18083/v1/models/iris:predict tensor-auth "$WORK/tensor.json"
run base64/nginx "$NGINX_PID" http://127.0.0.1:18080/v1/encode base64 "$WORK/base64.json"
run base64/hyper-ceiling "$CEILING_PID" http://127.0.0.1:18004/v1/encode base64 "$WORK/base64.json"
run base64/moat-forwarding "$MOAT_PID" http://127.0.0.1:18081/v1/encode base64 "$WORK/base64.json"
run base64/moat-every-check "$FULL_PID" http://127.0.0.1:18083/v1/encode base64-auth "$WORK/base64.json"

if [ "${OVERLOAD:-}" = 1 ]; then
  echo "overload: tensor, every check, max_buffered_body_bytes 32 MiB; idle RSS $(awk '/VmRSS/ {print $2 / 1024 " MiB"}' "/proc/$FULL_PID/status")"
  for connections in 8 64 256; do
    taskset -c "$OTHER_CPU" wrk -t1 -c"$connections" -d"$DURATION" --timeout 2s --latency \
      -s "$WORK/tensor-auth.lua" http://127.0.0.1:18083/v1/models/iris:predict > "$OUT/overload-$connections.txt"
    python3 - "$OUT/overload-$connections.txt" "$connections" "$(awk '/VmHWM/ {print $2}' "/proc/$FULL_PID/status")" "$DURATION" <<'PY'
import re, sys
text, connections, hwm_kib, duration = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3]), sys.argv[4]
seconds = float(duration.rstrip("s"))
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
bad = int(bad.group(1)) if bad else 0
timeouts = re.search(r"timeout (\d+)", text)
print(f"{connections:>4} connections: goodput {(total - bad) / seconds:6.1f} req/s, non-2xx {bad}, "
      f"client timeouts {timeouts.group(1) if timeouts else 0}, peak RSS {hwm_kib / 1024:.0f} MiB")
PY
  done
fi
