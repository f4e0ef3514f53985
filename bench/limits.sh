#!/usr/bin/env bash
# The cost of shared limits: the same moat, the same API key with a rate limit and a quota
# (both far above the load, so every request is admitted and counted), counted in memory
# and in a real redis-server on loopback. Prints each one's req/s, p50 and p99, and what
# Redis adds (goal: < 0.3 ms at p99).
# Needs: wrk, nginx, redis-server (Debian: apt-get install wrk nginx-light redis-server).
# Usage: bench/limits.sh [duration=15s] [connections=16]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk nginx redis-server taskset; do
  command -v "$tool" >/dev/null || { echo "bench/limits.sh needs $tool (Debian: apt-get install wrk nginx-light redis-server)" >&2; exit 2; }
done
DURATION=${1:-15s}
CONNECTIONS=${2:-16}
PROXY_CPU=${PROXY_CPU:-0}      # moat
OTHER_CPU=${OTHER_CPU:-1}      # upstream, Redis and wrk
# shellcheck source=bench/lib.sh
. bench/lib.sh
OUT="$WORK/out"
mkdir "$OUT"
build_moat
upstream_conf
"$MOAT" keys new --id bench --scopes predict --rate-limit 1000000/1000000 --quota 1000000000/day \
  --store "$WORK/keys.yaml" > "$WORK/key.txt" 2>/dev/null
for store in memory redis; do
  port=$([ "$store" = memory ] && echo 18081 || echo 18082)
  admin=$([ "$store" = memory ] && echo 19091 || echo 19092)
  if [ "$store" = memory ]; then
    section="  store: memory"
  else
    section=$'  store:\n    redis: {url: "redis://127.0.0.1:16379", timeout: 100ms, on_error: deny}'
  fi
  cat > "$WORK/moat-$store.yaml" <<CONF
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
upstream:
  url: http://127.0.0.1:18000
openapi:
  file: $PWD/tests/fixtures/specs/fastapi-iris.json
auth:
  schemes:
    api_key: {type: api_key, store: $WORK/keys.yaml}
policy:
  default: [{api_key: [predict]}]
limits:
  max_requests_per_connection: 100000
$section
CONF
done

taskset -c "$OTHER_CPU" nginx -c "$WORK/upstream.conf" -p "$WORK" &
taskset -c "$OTHER_CPU" redis-server --bind 127.0.0.1 --port 16379 --save "" --appendonly no > "$OUT/redis.log" &
sleep 0.5
for store in memory redis; do
  MOAT_LOG=info,moat::access=off taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-$store.yaml" > "$OUT/moat-$store.log" &
done
sleep 1

cat > "$WORK/predict.lua" <<LUA
wrk.method = "POST"
wrk.body   = '{"instances":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]],"output":"label"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$(cat "$WORK/key.txt")"
LUA
run() { # name url
  echo "== $1"
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/predict.lua" "$2" \
    | tee "$OUT/$1.txt" | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors" || true
}
run memory http://127.0.0.1:18081/v1/models/iris:predict
run redis http://127.0.0.1:18082/v1/models/iris:predict
run memory-again http://127.0.0.1:18081/v1/models/iris:predict

ms() { wrk_ms "$OUT/$1.txt" "$2"; }
rps() { grep Requests/sec "$OUT/$1.txt" | awk '{print $2}'; }
echo "added by Redis, p50: $(python3 -c "print(round($(ms redis 50%) - min($(ms memory 50%), $(ms memory-again 50%)), 3))") ms"
echo "added by Redis, p99: $(python3 -c "print(round($(ms redis 99%) - min($(ms memory 99%), $(ms memory-again 99%)), 3))") ms"
echo "ratio redis/memory (req/s): $(python3 -c "print(round($(rps redis) / max($(rps memory), $(rps memory-again)), 3))")"
curl -s http://127.0.0.1:19092/metrics | grep -E '^moat_limit_(decisions_total|store_errors_total|store_duration_seconds_(sum|count))' || true
