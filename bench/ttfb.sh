#!/usr/bin/env bash
# Time to first byte of a streamed LLM response: straight from an SSE upstream shaped as
# vLLM streams, through moat with the operation unmetered (`llm: none`), and through moat
# metering it for a key with a token budget (reservation at admission, every event parsed
# and counted, settlement at the end). Also reports reads that saw more than one event
# (0 expected: moat never coalesces events). Needs only python3 (stdlib).
# Usage: bench/ttfb.sh [runs=200]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_moat
python3 bench/ttfb.py serve 18100 &
"$MOAT" keys new --id bench --token-budget 1000000000/day --max-tokens 4096 \
  --store "$WORK/keys.yaml" > "$WORK/key.txt" 2>/dev/null
KEY=$(cat "$WORK/key.txt")
for profile in none openai; do
  port=$([ "$profile" = none ] && echo 18101 || echo 18102)
  admin=$([ "$profile" = none ] && echo 19101 || echo 19102)
  cat > "$WORK/moat-$profile.yaml" <<CONF
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
upstream:
  url: http://127.0.0.1:18100
openapi:
  url: http://127.0.0.1:18100/openapi.json
auth:
  schemes:
    key: {type: api_key, bearer: true, store: $WORK/keys.yaml}
policy:
  default: [{key: []}]
  operations:
    chat: {llm: $profile}
CONF
  MOAT_LOG=warn "$MOAT" serve --config "$WORK/moat-$profile.yaml" > "$WORK/moat-$profile.log" 2>&1 &
done
sleep 1.5
for target in "upstream 18100" "moat-unmetered 18101" "moat-metered 18102"; do
  set -- $target
  key=$([ "$1" = upstream ] && echo "" || echo "$KEY")
  python3 bench/ttfb.py measure "http://127.0.0.1:$2" "$key" 20 > /dev/null   # warm-up
  printf '%-16s %s\n' "$1" "$(python3 bench/ttfb.py measure "http://127.0.0.1:$2" "$key" "$RUNS")"
done
curl -s "http://127.0.0.1:19102/metrics" | grep -E '^moat_llm_tokens_total' || true
