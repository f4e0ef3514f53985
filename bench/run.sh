#!/usr/bin/env bash
# Proxy throughput: moat vs nginx as a plain reverse proxy, one core each, same upstream,
# same wrk load. Needs: wrk and nginx (Debian: apt-get install wrk nginx-light).
# Usage: bench/run.sh [duration=15s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk nginx taskset; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (Debian: apt-get install wrk nginx-light)" >&2; exit 2; }
done
DURATION=${1:-15s}
CONNECTIONS=${2:-64}
PROXY_CPU=${PROXY_CPU:-0}      # the proxy under test
OTHER_CPU=${OTHER_CPU:-1}      # upstream and wrk share the other core
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.3; rm -rf "$WORK"' EXIT

# MOAT=path/to/moat compares another build (alternate two binaries to measure one change).
if [ -z "${MOAT:-}" ]; then
  cargo build --release --locked --quiet
  MOAT=target/release/moat
fi

# The upstream: nginx answering a fixed 64-byte JSON body, as fast as a model never is.
cat > "$WORK/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/upstream.pid; error_log $WORK/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:18000;
    location / { default_type application/json; return 200 '{"predictions":[{"label":"setosa","class_index":0}]}'; } } }
CONF
# nginx as a plain reverse proxy, no checks: the baseline.
cat > "$WORK/nginx-proxy.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/proxy.pid; error_log $WORK/proxy.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  upstream model { server 127.0.0.1:18000; keepalive 64; }
  server { listen 127.0.0.1:18080;
    location / { proxy_pass http://model; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$WORK/moat.yaml" <<CONF
listen: 127.0.0.1:18081
admin_listen: 127.0.0.1:19090
upstream:
  url: http://127.0.0.1:18000
limits: {max_requests_per_connection: 100000}   # as the nginx configs' keepalive_requests
CONF
# The same with the FastAPI iris server's OpenAPI document: routing, path-parameter
# pattern, strict JSON and the predict body schema checked on every request.
cat > "$WORK/moat-checks.yaml" <<CONF
listen: 127.0.0.1:18082
admin_listen: 127.0.0.1:19091
upstream:
  url: http://127.0.0.1:18000
limits: {max_requests_per_connection: 100000}
openapi:
  file: $PWD/tests/fixtures/specs/fastapi-iris.json
CONF

# Every check on: bearer JWT (HS256) AND API key (argon2id, cached after the first use),
# scopes, routing and predict-body validation.
"$MOAT" keys new --id bench --scopes predict --store "$WORK/keys.yaml" > "$WORK/key.txt" 2>/dev/null
SECRET=bench-secret-bench-secret-bench-secret
TOKEN=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"iss": "https://login.example.com/", "aud": "model-api", "sub": "bench",
                         "exp": int(time.time()) + 3600, "scope": "predict"}).encode())
signature = hmac.new(sys.argv[1].encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
PY
)
cat > "$WORK/moat-full.yaml" <<CONF
listen: 127.0.0.1:18083
admin_listen: 127.0.0.1:19092
upstream:
  url: http://127.0.0.1:18000
limits: {max_requests_per_connection: 100000}
openapi:
  file: $PWD/tests/fixtures/specs/fastapi-iris.json
auth:
  schemes:
    bearer: {type: jwt, issuer: "https://login.example.com/", audience: model-api, algorithms: [HS256], secret: $SECRET}
    api_key: {type: api_key, store: $WORK/keys.yaml}
policy:
  default: [{bearer: [predict], api_key: [predict]}]
CONF

taskset -c "$OTHER_CPU" nginx -c "$WORK/upstream.conf" -p "$WORK" &
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" &
taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat.yaml" > "$WORK/moat.log" &
MOAT_PID=$!
taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-checks.yaml" > "$WORK/moat-checks.log" &
CHECKS_PID=$!
taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-full.yaml" > "$WORK/moat-full.log" &
FULL_PID=$!
sleep 1
echo "moat idle RSS: $(grep VmRSS /proc/$MOAT_PID/status | awk '{print $2, $3}')"

cat > "$WORK/predict.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"instances":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]],"output":"label"}'
wrk.headers["Content-Type"] = "application/json"
LUA
sed -e "s|^LUA_END||" "$WORK/predict.lua" > "$WORK/predict-auth.lua"
cat >> "$WORK/predict-auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["X-API-Key"] = "$(cat "$WORK/key.txt")"
LUA

run() { # name url [script]
  echo "== $1"
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "${3:-$WORK/predict.lua}" "$2" \
    | tee "$WORK/$1.txt" | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors" || true
}
run upstream-direct http://127.0.0.1:18000/v1/models/iris:predict
run nginx-proxy http://127.0.0.1:18080/v1/models/iris:predict
run moat-proxy http://127.0.0.1:18081/v1/models/iris:predict
run moat-checks http://127.0.0.1:18082/v1/models/iris:predict
run moat-full http://127.0.0.1:18083/v1/models/iris:predict "$WORK/predict-auth.lua"
echo "moat RSS after load: $(grep VmRSS /proc/$MOAT_PID/status | awk '{print $2, $3}')"

rps() { grep Requests/sec "$WORK/$1.txt" | awk '{print $2}'; }
echo "ratio moat/nginx (req/s): $(python3 -c "print(round($(rps moat-proxy)/$(rps nginx-proxy), 3))")"
echo "ratio moat with validation/nginx (req/s): $(python3 -c "print(round($(rps moat-checks)/$(rps nginx-proxy), 3))")"
echo "ratio moat with bearer+key+validation/nginx (req/s): $(python3 -c "print(round($(rps moat-full)/$(rps nginx-proxy), 3))")"

# Allocations per proxied request: libc's malloc/calloc/realloc counted with uprobes in
# the real binary under load (root and perf needed; the probes slow moat down, so this is a
# separate short pass after the throughput runs).
LIBC=$(ldd "$MOAT" | awk '/libc.so/ {print $3}')
if command -v perf >/dev/null && [ -n "$LIBC" ] && for f in malloc calloc realloc; do
     perf probe -q -x "$LIBC" "$f" 2>/dev/null || perf probe -l 2>/dev/null | grep -q "probe_libc:$f"
   done; then
  allocs() { # name pid url [script]
    perf stat -x, -e probe_libc:malloc,probe_libc:calloc,probe_libc:realloc -p "$2" -o "$WORK/$1.perf" &
    local perf_pid=$!
    sleep 0.5
    taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d3s -s "${4:-$WORK/predict.lua}" "$3" > "$WORK/$1.alloc.txt"
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    local requests calls
    requests=$(awk '/requests in/ {print $1}' "$WORK/$1.alloc.txt")
    calls=$(awk -F, '/probe_libc/ {sum += $1} END {print sum}' "$WORK/$1.perf")
    echo "allocations per request, $1: $(python3 -c "print(round($calls/$requests, 1))")"
  }
  allocs moat-proxy "$MOAT_PID" http://127.0.0.1:18081/v1/models/iris:predict
  allocs moat-checks "$CHECKS_PID" http://127.0.0.1:18082/v1/models/iris:predict
  allocs moat-full "$FULL_PID" http://127.0.0.1:18083/v1/models/iris:predict "$WORK/predict-auth.lua"
else
  echo "allocations per request: skipped (needs perf with uprobes, as root)"
fi
