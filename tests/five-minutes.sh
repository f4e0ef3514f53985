#!/usr/bin/env bash
# README "Five minutes", step by step, as a new user types it: run in a directory holding a
# copy of the shipped config/ (the working directory), with `moat` on PATH. The model and
# moat listen on the README's ports unless MODEL_PORT / MOAT_PORT / ADMIN_PORT say otherwise
# (tests pick free ones); MODEL_PYTHON and MODEL_DIR say how to start the FastAPI model.
# Driven by tests/five_minutes.rs; fails at the first step that does not do what the README
# says.
set -euo pipefail
MODEL_PORT=${MODEL_PORT:-8000}
MOAT_PORT=${MOAT_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
export MOAT_LISTEN=127.0.0.1:$MOAT_PORT MOAT_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT
export MOAT_UPSTREAM=http://127.0.0.1:$MODEL_PORT
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
trap 'exit 1' INT TERM

step() { printf '\n== %s\n' "$*"; }
# expect STATUS CURL-ARGS...: the request answers STATUS (the body is printed).
expect() {
  local want=$1; shift
  local got
  got=$(curl -s -o body.out -w '%{http_code}' "$@")
  cat body.out; echo
  if [ "$got" != "$want" ]; then echo "expected $want, got $got: curl $*" >&2; exit 1; fi
}
wait_for() { for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 never answered" >&2; exit 1; }

step "1. run the model on loopback and get its spec"
(cd "$MODEL_DIR" && exec "$MODEL_PYTHON" -m uvicorn app:app --host 127.0.0.1 --port "$MODEL_PORT" --log-level warning) &
wait_for "http://127.0.0.1:$MODEL_PORT/health"
curl -s "localhost:$MODEL_PORT/openapi.json" > config/openapi.json
grep -q '"openapi"' config/openapi.json

step "3. secrets in .env, and moat check"
printf 'MOAT_JWT_SECRET=%s\nMOAT_KEY_PEPPER=%s\n' "$(head -c 32 /dev/urandom | base64)" \
    "$(head -c 32 /dev/urandom | base64)" > .env && chmod 600 .env
sed -i 's/^# env:/env:/; s/^#   dotenv: .env/  dotenv: .env/' config/moat.yaml
moat check

step "4. a key and a test token"
KEY=$(moat keys new --id batch-scorer --scopes predict)
TOKEN=$(moat token --sub alice --scopes predict)
grep -q 'batch-scorer' config/keys.yaml
grep -q '^# ' config/keys.yaml   # the shipped store's comment is kept

step "5. serve and try it"
moat serve > moat.log &
wait_for "http://127.0.0.1:$ADMIN_PORT/readyz"
BODY='{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
expect 200 "localhost:$MOAT_PORT/v1/models/iris:predict" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d "$BODY"
expect 200 "localhost:$MOAT_PORT/v1/models/iris:predict" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$BODY"
expect 401 "localhost:$MOAT_PORT/v1/models/iris:predict" -H 'Content-Type: application/json' -d "$BODY"
grep -q credentials_missing body.out
expect 400 "localhost:$MOAT_PORT/v1/models/iris:predict" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{"instances": "x"}'
grep -q body_schema body.out
expect 200 "localhost:$MOAT_PORT/health"
moat explain POST /v1/models/iris:predict -H "X-API-Key: $KEY" --data "$BODY"
if grep -qF "$KEY" moat.log; then echo "the key reached the log" >&2; exit 1; fi
echo "five minutes: ok"
