# Shared by the bench scripts (sourced, not run): a work directory removed on exit with
# every process the script started, moat's release build, the nginx upstream, and wrk's
# latency figures in milliseconds.

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.3; rm -rf "$WORK"' EXIT

# MOAT=path/to/moat compares another build (alternate two binaries to measure one change).
build_moat() {
  if [ -z "${MOAT:-}" ]; then
    cargo build --release --locked --quiet
    MOAT=target/release/moat
  fi
}

# The upstream: nginx on 127.0.0.1:18000 answering a fixed JSON body (default: a predict
# answer), as fast as a model never is. Writes $WORK/upstream.conf.
upstream_conf() {
  local body=${1:-'{"predictions":[{"label":"setosa","class_index":0}]}'}
  cat > "$WORK/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/upstream.pid; error_log $WORK/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:18000;
    location / { default_type application/json; return 200 '$body'; } } }
CONF
}

# wrk_ms FILE QUANTILE: wrk prints 850.00us, 1.84ms or 1.02s; this prints milliseconds.
wrk_ms() {
  awk -v q="$2" '$1 == q {print $2}' "$1" \
    | python3 -c "import sys; v = sys.stdin.read().strip(); u = v.lstrip('0123456789.'); print(round(float(v[:len(v) - len(u)]) * {'us': 1e-3, 'ms': 1, 's': 1e3}[u], 3))"
}
