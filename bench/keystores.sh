#!/usr/bin/env bash
# Key stores of 100,000 records: a YAML file, the same as JSON, and Redis. For each: moat's
# time from exec to /healthz answering, its resident memory, a cached key's throughput and
# latency under wrk, and one change (`moat keys revoke`): how long the command takes and how
# long until the serving replica shows it applied (/readyz's digest or version changes).
# Needs: wrk, nginx, redis-server (Debian: apt-get install wrk nginx-light redis-server).
# Usage: bench/keystores.sh [records=100000] [duration=10s] [connections=16]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk nginx redis-server taskset curl; do
  command -v "$tool" >/dev/null || { echo "bench/keystores.sh needs $tool (Debian: apt-get install wrk nginx-light redis-server curl)" >&2; exit 2; }
done
RECORDS=${1:-100000}
DURATION=${2:-10s}
CONNECTIONS=${3:-16}
PROXY_CPU=${PROXY_CPU:-0}
OTHER_CPU=${OTHER_CPU:-1}
# shellcheck source=bench/lib.sh
. bench/lib.sh
# Logs apart from the configs and stores: moat watches their directory.
mkdir "$WORK/out"
build_moat
upstream_conf
now_ms() { date +%s%3N; }

# Records of the shape `moat keys new --scopes --owner` writes, each with its own
# well-formed argon2id hash of no key (verifying one is never needed: the bench key is real).
python3 - "$RECORDS" "$WORK" <<'PY'
import base64, json, os, sys
n, work = int(sys.argv[1]), sys.argv[2]
b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
records = [{"id": f"k{i:06d}", "hash": f"$argon2id$v=19$m=19456,t=2,p=1${b64(os.urandom(16))}${b64(os.urandom(32))}",
            "scopes": ["predict"], "owner": f"team-{i % 97}"} for i in range(n)]
with open(f"{work}/keys.json", "w") as out:
    out.write('{"keys": [\n  ' + ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in records) + "\n]}\n")
with open(f"{work}/keys.yaml", "w") as out:
    out.write("keys:\n" + "".join(
        f'  - id: {r["id"]}\n    hash: "{r["hash"]}"\n    scopes: [predict]\n    owner: {r["owner"]}\n' for r in records))
PY

taskset -c "$OTHER_CPU" nginx -c "$WORK/upstream.conf" -p "$WORK" &
taskset -c "$OTHER_CPU" redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no > /dev/null &
sleep 0.5
REDIS=redis://127.0.0.1:16379

timed() { local start; start=$(now_ms); "$@" > /dev/null 2>&1; echo $(( $(now_ms) - start )); }
EDIT_YAML=$(timed "$MOAT" keys new --id bench --scopes predict --store "$WORK/keys.yaml")
"$MOAT" keys new --id bench --scopes predict --store "$WORK/keys.json" > "$WORK/key.txt" 2>/dev/null
IMPORT=$(timed "$MOAT" keys import "$WORK/keys.json" --store "$REDIS")
KEY=$(cat "$WORK/key.txt")
# The YAML store got its own bench key: give it the JSON one's record, so one key serves all.
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
bench = [r for r in json.load(open(f"{work}/keys.json"))["keys"] if r["id"] == "bench"][0]
text = open(f"{work}/keys.yaml").read().split('  - id: "bench"\n')[0]
open(f"{work}/keys.yaml", "w").write(text + f'  - id: bench\n    hash: "{bench["hash"]}"\n    scopes: ["predict"]\n')
PY

printf '%-6s %10s %9s %10s %9s %9s %11s %11s\n' store ready_ms rss_MiB req_per_s p50_ms p99_ms revoke_ms applied_ms
for store in yaml json redis; do
  case $store in
    redis) source_yaml="{redis: {url: \"$REDIS\"}}" ; target=$REDIS ;;
    *) source_yaml="$WORK/keys.$store" ; target="$WORK/keys.$store" ;;
  esac
  cat > "$WORK/moat-$store.yaml" <<CONF
listen: 127.0.0.1:18081
admin_listen: 127.0.0.1:19091
upstream: {url: "http://127.0.0.1:18000"}
limits: {max_requests_per_connection: 100000}
auth:
  schemes:
    api_key: {type: api_key, store: $source_yaml}
policy:
  default: [{api_key: [predict]}]
CONF
  start=$(now_ms)
  MOAT_LOG=info,moat::access=off taskset -c "$PROXY_CPU" "$MOAT" serve --config "$WORK/moat-$store.yaml" \
    > "$WORK/out/moat-$store.log" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:19091/healthz; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/out/moat-$store.log" >&2; exit 1; }
    sleep 0.01
  done
  ready=$(( $(now_ms) - start ))
  rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  curl -sf -o /dev/null -H "X-API-Key: $KEY" http://127.0.0.1:18081/predict   # the one argon2 hash
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -H "X-API-Key: $KEY" \
    http://127.0.0.1:18081/predict > "$WORK/wrk-$store.txt"
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/wrk-$store.txt")
  before=$(curl -s http://127.0.0.1:19091/readyz | grep 'key store')
  revoke=$(timed "$MOAT" keys revoke k000001 --store "$target")
  start=$(now_ms)
  until [ "$(curl -s http://127.0.0.1:19091/readyz | grep 'key store' | sed 's/, read .*//; s/, confirmed .*//')" != \
          "$(echo "$before" | sed 's/, read .*//; s/, confirmed .*//')" ]; do sleep 0.01; done
  applied=$(( $(now_ms) - start ))
  printf '%-6s %10s %9s %10s %9s %9s %11s %11s\n' "$store" "$ready" "$rss" "$rps" \
    "$(wrk_ms "$WORK/wrk-$store.txt" 50%)" "$(wrk_ms "$WORK/wrk-$store.txt" 99%)" "$revoke" "$applied"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
echo "one new key on the $RECORDS-record YAML store: $EDIT_YAML ms; the JSON store imported into Redis: $IMPORT ms"
