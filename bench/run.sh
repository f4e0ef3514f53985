#!/usr/bin/env bash
# Proxy throughput: moat vs nginx as a plain reverse proxy and vs a bare hyper pass-through
# (bench/ceiling), one core each, same upstream, same wrk load.
# Needs: wrk, nginx and openssl (Debian: apt-get install wrk nginx-light openssl).
# Usage: bench/run.sh [duration=15s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk nginx taskset openssl; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (Debian: apt-get install wrk nginx-light openssl)" >&2; exit 2; }
done
DURATION=${1:-15s}
CONNECTIONS=${2:-64}
PROXY_CPU=${PROXY_CPU:-0}      # the proxy under test
OTHER_CPU=${OTHER_CPU:-1}      # upstream and wrk share the other core
# shellcheck source=bench/lib.sh
. bench/lib.sh
# Output apart from the configs: moat watches its config's directory, and would handle an
# event for every log write there.
OUT="$WORK/out"
mkdir "$OUT"
build_moat
# The ceiling: a bare hyper pass-through (bench/ceiling), what hyper costs without moat.
cargo build --release --locked --quiet --manifest-path bench/ceiling/Cargo.toml --target-dir target/ceiling
CEILING=target/ceiling/release/moat-bench-ceiling

upstream_conf
proxy_conf
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

# The same checks with the answers relayed unchecked (`responses: {mode: off}`): the
# difference is what holding each answer to the spec's PredictResponse costs (the default,
# shadow, reads and validates every declared JSON answer).
sed -e 's/18082/18084/; s/19091/19093/' "$WORK/moat-checks.yaml" > "$WORK/moat-checks-off.yaml"
echo "responses: {mode: off}" >> "$WORK/moat-checks-off.yaml"

every_check_config

taskset -c "$OTHER_CPU" nginx -c "$WORK/upstream.conf" -p "$WORK" &
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" &
NGINX_MASTER=$!
taskset -c "$PROXY_CPU" "$CEILING" 127.0.0.1:18004 127.0.0.1:18000 &
CEILING_PID=$!
# Forwarding alone runs with the access log off, as nginx's; the others log every request.
MOAT_LOG=info,moat::access=off taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat.yaml" > "$OUT/moat.log" &
MOAT_PID=$!
taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-checks.yaml" > "$OUT/moat-checks.log" &
CHECKS_PID=$!
taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-full.yaml" > "$OUT/moat-full.log" &
FULL_PID=$!
taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-checks-off.yaml" > "$OUT/moat-checks-off.log" &
CHECKS_OFF_PID=$!
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

run() { # name pid url [script] — pid: the proxy whose CPU per request is printed (0: none)
  echo "== $1"
  local before=0 after=0
  [ "$2" = 0 ] || before=$(cpu_ticks "$2")
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "${4:-$WORK/predict.lua}" "$3" \
    | tee "$OUT/$1.txt" | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors" || true
  [ "$2" = 0 ] || after=$(cpu_ticks "$2")
  if [ "$2" != 0 ]; then
    echo "$(awk '/requests in/ {print $1}' "$OUT/$1.txt") $((after - before))" > "$OUT/$1.cpu"
    echo "    CPU per request: $(awk '{printf "%.1f", $2 * 10000 / $1}' "$OUT/$1.cpu") µs"
  fi
}
NGINX_PID=$(pgrep -P "$NGINX_MASTER" | head -1)
run upstream-direct 0 http://127.0.0.1:18000/v1/models/iris:predict
run nginx-proxy "$NGINX_PID" http://127.0.0.1:18080/v1/models/iris:predict
run hyper-ceiling "$CEILING_PID" http://127.0.0.1:18004/v1/models/iris:predict
run moat-proxy "$MOAT_PID" http://127.0.0.1:18081/v1/models/iris:predict
run moat-checks "$CHECKS_PID" http://127.0.0.1:18082/v1/models/iris:predict
run moat-checks-answers-unchecked "$CHECKS_OFF_PID" http://127.0.0.1:18084/v1/models/iris:predict
run moat-full "$FULL_PID" http://127.0.0.1:18083/v1/models/iris:predict "$WORK/predict-auth.lua"
echo "moat RSS after load: $(grep VmRSS /proc/$MOAT_PID/status | awk '{print $2, $3}')"

rps() { grep Requests/sec "$OUT/$1.txt" | awk '{print $2}'; }
echo "ratio bare hyper/nginx (req/s): $(python3 -c "print(round($(rps hyper-ceiling)/$(rps nginx-proxy), 3))")"
echo "ratio moat/nginx (req/s): $(python3 -c "print(round($(rps moat-proxy)/$(rps nginx-proxy), 3))")"
echo "ratio moat with validation/nginx (req/s): $(python3 -c "print(round($(rps moat-checks)/$(rps nginx-proxy), 3))")"
echo "ratio moat with bearer+key+validation/nginx (req/s): $(python3 -c "print(round($(rps moat-full)/$(rps nginx-proxy), 3))")"
p50() { wrk_ms "$OUT/$1.txt" 50%; }
echo "p50 added by response checks (ms): $(python3 -c "print(round($(p50 moat-checks) - $(p50 moat-checks-answers-unchecked), 3))")"
p99() { wrk_ms "$OUT/$1.txt" 99%; }
echo "ratio p99 moat with bearer+key+validation/nginx: $(python3 -c "print(round($(p99 moat-full)/$(p99 nginx-proxy), 3))")"
cpu() { awk '{print $2 * 10000 / $1}' "$OUT/$1.cpu"; }
echo "ratio CPU per request moat with bearer+key+validation/bare hyper: $(python3 -c "print(round($(cpu moat-full)/$(cpu hyper-ceiling), 3))")"
echo "ratio CPU per request moat/bare hyper: $(python3 -c "print(round($(cpu moat-proxy)/$(cpu hyper-ceiling), 3))")"

# Allocations per proxied request: libc's malloc/calloc/realloc counted with uprobes in
# the real binary under load (root and perf needed; the probes slow moat down, so this is a
# separate short pass after the throughput runs).
LIBC=$(ldd "$MOAT" | awk '/libc.so/ {print $3}')
if command -v perf >/dev/null && [ -n "$LIBC" ] && for f in malloc calloc realloc; do
     perf probe -q -x "$LIBC" "$f" 2>/dev/null || perf probe -l 2>/dev/null | grep -q "probe_libc:$f"
   done; then
  allocs() { # name pid url [script]
    perf stat -x, -e probe_libc:malloc,probe_libc:calloc,probe_libc:realloc -p "$2" -o "$OUT/$1.perf" &
    local perf_pid=$!
    sleep 0.5
    taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d3s -s "${4:-$WORK/predict.lua}" "$3" > "$OUT/$1.alloc.txt"
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    local requests calls
    requests=$(awk '/requests in/ {print $1}' "$OUT/$1.alloc.txt")
    calls=$(awk -F, '/probe_libc/ {sum += $1} END {print sum}' "$OUT/$1.perf")
    echo "allocations per request, $1: $(python3 -c "print(round($calls/$requests, 1))")"
  }
  allocs moat-proxy "$MOAT_PID" http://127.0.0.1:18081/v1/models/iris:predict
  allocs moat-checks "$CHECKS_PID" http://127.0.0.1:18082/v1/models/iris:predict
  allocs moat-full "$FULL_PID" http://127.0.0.1:18083/v1/models/iris:predict "$WORK/predict-auth.lua"
else
  echo "allocations per request: skipped (needs perf with uprobes, as root)"
fi
