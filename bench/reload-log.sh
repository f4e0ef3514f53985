#!/usr/bin/env bash
# The access log written into the config directory under load: throughput, p99, and
# that nothing reloads (moat_config_generation stays 0). Needs wrk and nginx.
# Usage: bench/reload-log.sh dir   # log beside moat.yaml
#        bench/reload-log.sh null  # log to /dev/null, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
MOAT=${MOAT:-target/release/moat}
upstream_conf
taskset -c 1 nginx -c "$WORK/upstream.conf" &
mkdir "$WORK/conf"
"$MOAT" keys new --id bench --scopes predict --store "$WORK/conf/keys.yaml" > "$WORK/key.txt" 2>/dev/null
cp tests/fixtures/specs/fastapi-iris.json "$WORK/conf/openapi.json"
cat > "$WORK/conf/moat.yaml" <<CONF
listen: 127.0.0.1:18081
admin_listen: 127.0.0.1:19090
upstream:
  url: http://127.0.0.1:18000
openapi:
  file: $WORK/conf/openapi.json
auth:
  schemes:
    api_key: {type: api_key, store: $WORK/conf/keys.yaml}
policy:
  default: [{api_key: []}]
CONF
if [ "$1" = dir ]; then OUT="$WORK/conf/access.log"; else OUT=/dev/null; fi
taskset -c 0 "$MOAT" serve --config "$WORK/conf/moat.yaml" > "$OUT" 2>&1 &
sleep 1
KEY=$(cat "$WORK/key.txt")
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$KEY"
LUA
curl -s -o /dev/null -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' http://127.0.0.1:18081/v1/models/iris:predict
taskset -c 1 wrk -t1 -c32 -d10s --latency -s "$WORK/post.lua" http://127.0.0.1:18081/v1/models/iris:predict | grep -E "Requests/sec|99%|Non-2xx"
curl -s http://127.0.0.1:19090/metrics | grep -E "^moat_config_generation|^moat_config_reloads|^moat_key_verifications_total"
