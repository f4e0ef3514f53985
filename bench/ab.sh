#!/usr/bin/env bash
# A/B: two moat builds alternated on one core, every check on (RS256 JWT + API key +
# validation + access log), on admitted traffic and on refused traffic (no credential:
# 401), so a change to the request path or the refusal path shows against the noise.
# Needs: wrk, nginx, openssl. Usage: bench/ab.sh BEFORE AFTER [rounds=3] [duration=8s] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$1; AFTER=$2; ROUNDS=${3:-3}; DURATION=${4:-8s}; CONNECTIONS=${5:-32}
. bench/lib.sh
upstream_conf
taskset -c 1 nginx -c "$WORK/upstream.conf" -p "$WORK" &
MOAT=$AFTER every_check_config
mkdir "$WORK/out"
cat > "$WORK/ok.lua" <<LUA
wrk.method = "POST"
wrk.body   = '{"instances":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]],"output":"label"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["X-API-Key"] = "$(cat "$WORK/key.txt")"
LUA
cat > "$WORK/refused.lua" <<LUA
wrk.method = "POST"
wrk.body   = '{"instances":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]],"output":"label"}'
wrk.headers["Content-Type"] = "application/json"
LUA
for round in $(seq "$ROUNDS"); do
  for name in before after; do
    bin=$BEFORE; [ $name = after ] && bin=$AFTER
    taskset -c 0 "$bin" serve --config "$WORK/moat-full.yaml" > "$WORK/out/$name.log" 2>&1 &
    pid=$!
    sleep 1
    for kind in ok refused; do
      taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/$kind.lua" http://127.0.0.1:18083/v1/models/iris:predict > "$WORK/out/r.txt"
      printf '%s round %s %-8s %s req/s  p50 %s ms  p99 %s ms  non2xx:%s\n' "$name" "$round" "$kind" \
        "$(awk '/Requests\/sec/ {print $2}' "$WORK/out/r.txt")" "$(wrk_ms "$WORK/out/r.txt" 50%)" "$(wrk_ms "$WORK/out/r.txt" 99%)" \
        "$(awk '/Non-2xx/ {print $NF}' "$WORK/out/r.txt")"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
