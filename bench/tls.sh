#!/usr/bin/env bash
# TLS cost: moat forwarding GETs over plain HTTP vs TLS 1.3 (P-256 certificate), one core
# for moat, keep-alive connections (so this is record encryption, not handshakes), plus a
# handshake-heavy run where wrk opens a new connection per request.
# Needs: wrk, nginx, openssl.  Usage: bench/tls.sh [duration=10s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNECTIONS=${2:-64}
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_moat
upstream_conf '{"ok":true}'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
for mode in plain tls; do
  port=$([ $mode = plain ] && echo 18081 || echo 18443)
  {
    echo "listen: 127.0.0.1:$port"
    echo "admin_listen: 127.0.0.1:$((port + 1000))"
    echo "upstream: {url: http://127.0.0.1:18000}"
    [ $mode = tls ] && echo "tls: {cert_file: $WORK/tls.crt, key_file: $WORK/tls.key}"
  } > "$WORK/$mode.yaml"
done
taskset -c 1 nginx -c "$WORK/upstream.conf" &
MOAT_LOG=warn taskset -c 0 "$MOAT" serve --config "$WORK/plain.yaml" >/dev/null &
MOAT_LOG=warn taskset -c 0 "$MOAT" serve --config "$WORK/tls.yaml" >/dev/null &
sleep 1
for url in http://127.0.0.1:18081/x https://127.0.0.1:18443/x; do
  echo "== $url keep-alive"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url" | grep -E 'Requests/sec|50%|99%'
done
echo "== https://127.0.0.1:18443/x new connection per request"
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H 'Connection: close' --latency \
  https://127.0.0.1:18443/x | grep -E 'Requests/sec|50%|99%'
