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
# answer the iris spec's PredictResponse accepts, as the real server writes it), as fast as
# a model never is; $2 adds http-level settings. Writes $WORK/upstream.conf.
upstream_conf() {
  local body=${1:-'{"model_name":"iris","model_version":"v1","predictions":[{"label":"setosa","class_index":0}],"request_id":null}'}
  cat > "$WORK/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/upstream.pid; error_log $WORK/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;${2:+ $2}
  server { listen 127.0.0.1:18000;
    location / { default_type application/json; return 200 '$body'; } } }
CONF
}

# nginx as a plain reverse proxy on 127.0.0.1:18080 to the upstream, no checks: the
# baseline; $1 adds http-level settings. Writes $WORK/nginx-proxy.conf.
proxy_conf() {
  cat > "$WORK/nginx-proxy.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/proxy.pid; error_log $WORK/proxy.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;${1:+ $1}
  upstream model { server 127.0.0.1:18000; keepalive 64; }
  server { listen 127.0.0.1:18080;
    location / { proxy_pass http://model; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
}

# wrk_ms FILE QUANTILE: wrk prints 850.00us, 1.84ms or 1.02s; this prints milliseconds.
wrk_ms() {
  awk -v q="$2" '$1 == q {print $2}' "$1" \
    | python3 -c "import sys; v = sys.stdin.read().strip(); u = v.lstrip('0123456789.'); print(round(float(v[:len(v) - len(u)]) * {'us': 1e-3, 'ms': 1, 's': 1e3}[u], 3))"
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# Every check on: bearer JWT (RS256, as identity providers sign) AND API key (argon2id,
# cached after the first use), scopes, routing and predict-body validation — a moat on
# 127.0.0.1:18083 (admin 19092) configured in $WORK/moat-full.yaml. Mints the key into
# $WORK/key.txt with $MOAT and sets TOKEN, a signed JWT for an hour.
every_check_config() {
  "$MOAT" keys new --id bench --scopes predict --store "$WORK/keys.yaml" > "$WORK/key.txt" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/signing.pem" 2>/dev/null
  openssl pkey -in "$WORK/signing.pem" -pubout -out "$WORK/verify.pem"
  local head claims signature
  head=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
  claims=$(printf '{"iss":"https://login.example.com/","aud":"model-api","sub":"bench","exp":%d,"scope":"predict"}' \
    "$(($(date +%s) + 3600))" | b64url)
  signature=$(printf '%s.%s' "$head" "$claims" | openssl dgst -sha256 -sign "$WORK/signing.pem" -binary | b64url)
  TOKEN="$head.$claims.$signature"
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
    bearer: {type: jwt, issuer: "https://login.example.com/", audience: model-api, algorithms: [RS256], public_key_file: $WORK/verify.pem}
    api_key: {type: api_key, store: $WORK/keys.yaml}
policy:
  default: [{bearer: [predict], api_key: [predict]}]
CONF
}

# The CPU time (user + system, in clock ticks of 10 ms) process $1 has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
