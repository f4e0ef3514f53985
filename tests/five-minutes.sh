#!/usr/bin/env bash
# README "Install" and "Five minutes", step by step, as a new user types them: run in an
# empty directory (the working directory) with MOAT_SRC naming a fresh copy of the
# repository. Step 0 installs moat from it with `cargo install --locked --path .` into
# INSTALL_ROOT (CARGO_INSTALL_FLAGS may add `--debug`: tests/five_minutes.rs does, as a
# release build takes 10–20 minutes) and puts INSTALL_ROOT/bin first on PATH; every later
# `moat` is that binary. The model and moat listen on the README's ports unless MODEL_PORT
# / MOAT_PORT / ADMIN_PORT say otherwise (tests pick free ones); MODEL_PYTHON and MODEL_DIR
# say how to start the FastAPI model. Driven by tests/five_minutes.rs; fails at the first
# step that does not do what the README says.
set -euo pipefail
MODEL_PORT=${MODEL_PORT:-8000}
MOAT_PORT=${MOAT_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
export MOAT_LISTEN=127.0.0.1:$MOAT_PORT MOAT_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT
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

step "0. install"
(cd "$MOAT_SRC" && cargo install --locked --path . --root "$INSTALL_ROOT" ${CARGO_INSTALL_FLAGS:-})
export PATH="$INSTALL_ROOT/bin:$PATH"
[ "$(command -v moat)" = "$INSTALL_ROOT/bin/moat" ]
moat --version
moat completions bash > moat.bash && grep -q 'serve' moat.bash
moat man > moat.1 && head -1 moat.1 | grep -q '^.TH'

step "1. run the model on loopback"
(cd "$MODEL_DIR" && exec "$MODEL_PYTHON" -m uvicorn app:app --host 127.0.0.1 --port "$MODEL_PORT" --log-level warning) &
wait_for "http://127.0.0.1:$MODEL_PORT/health"

step "2. a starter config from the model's own spec"
moat init --from "http://127.0.0.1:$MODEL_PORT/openapi.json"
grep -q '"predict_v1_models__model_name__predict_post": \[{bearer: \[read\]}, {api_key: \[read\]}\]' config/moat.yaml
grep -q '"reload_models_v1_admin_reload_post": \[{bearer: \[admin\]}, {api_key: \[admin\]}\]' config/moat.yaml
[ "$(stat -c %a config/.env)" = 600 ]
if moat init --from "http://127.0.0.1:$MODEL_PORT/openapi.json" 2>init.err; then echo "init overwrote" >&2; exit 1; fi
grep -q 'never overwrites' init.err

step "3. moat check"
moat check

step "4. a key and a test token"
KEY=$(moat keys new --id batch-scorer --scopes read)
TOKEN=$(moat token --sub alice --scopes read)
grep -q 'batch-scorer' config/keys.yaml

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
expect 403 "localhost:$MOAT_PORT/v1/admin/reload" -H "X-API-Key: $KEY" -X POST
grep -q insufficient_scope body.out
moat explain POST /v1/models/iris:predict -H "X-API-Key: $KEY" --data "$BODY"
if grep -qF "$KEY" moat.log; then echo "the key reached the log" >&2; exit 1; fi
echo "five minutes: ok"
