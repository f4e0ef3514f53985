#!/usr/bin/env bash
# One-time setup for the compose example: creates the secrets and the first API key.
#
#   secrets/age_identity   age identity (moat env keygen), the only key to config/.env.age
#   secrets/key_pepper     random pepper, mixed into every API-key hash
#   config/keys.yaml       the key store, with one key `demo` (scope predict)
#   config/.env.age        MOAT_JWT_SECRET (random HS256 secret), age-encrypted
#   .env                   MOAT_UID/MOAT_GID for compose (who the moat container runs as)
#
# Usage: ./setup.sh
# moat runs from $MOAT or the `moat` on PATH if there is one; otherwise from the image compose
# builds from the repository's Dockerfile (`docker compose build moat`): no Rust needed.
# Refuses to overwrite anything that exists; delete secrets/ and those files to start over.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -n ${MOAT:-} ]] || command -v moat >/dev/null; then
  moat=("${MOAT:-moat}")
  command -v "${moat[0]}" >/dev/null || { echo "setup.sh: MOAT=$MOAT is not a program" >&2; exit 1; }
else
  command -v docker >/dev/null || { echo "setup.sh: neither moat nor docker found" >&2; exit 1; }
  echo "setup.sh: no moat on PATH: building the image (the first build compiles moat: a few minutes)" >&2
  docker compose build moat
  # As the calling user, in this directory: the files it writes are yours, as with a host
  # binary. -i: `env encrypt` reads the plaintext on stdin.
  moat=(docker run --rm -i --user "$(id -u):$(id -g)" -v "$PWD:/work" -w /work
        -e MOAT_KEY_PEPPER_FILE moat:latest)
fi

for f in secrets/age_identity secrets/key_pepper config/keys.yaml config/.env.age .env; do
  if [[ -e $f ]]; then
    echo "setup.sh: $f exists; refusing to overwrite (delete it to start over)" >&2
    exit 1
  fi
done

umask 077                     # everything written below is for the owner only
mkdir -p secrets

random_hex() { head -c "$1" /dev/urandom | od -An -vtx1 | tr -d ' \n'; }

# 1. The age identity. Its public key is the recipient for config/.env.age.
"${moat[@]}" env keygen -o secrets/age_identity   # prints the public key on stderr
recipient=$(sed -n 's/^# public key: //p' secrets/age_identity)

# 2. The key pepper: 32 random bytes, hex.
random_hex 32 > secrets/key_pepper

# 3. The first API key. The key is printed once, here; only its hash is stored.
echo "API key for 'demo' (scope predict, 1000 requests a day on both replicas), shown only once — keep it:"
MOAT_KEY_PEPPER_FILE=secrets/key_pepper \
  "${moat[@]}" keys new --id demo --scopes predict --owner compose-demo --quota 1000/day \
  --store config/keys.yaml

# 4. The encrypted dotenv. The plaintext goes through a pipe, never to a file.
printf 'MOAT_JWT_SECRET=%s\n' "$(random_hex 32)" \
  | "${moat[@]}" env encrypt -r "$recipient" -o config/.env.age

# 5. Who the moat container runs as: compose bind-mounts the secrets with their host owner
#    and mode 0600, so it must be their owner. Never root: as root, hand them to the image's
#    nonroot user (65532) instead — and after every `moat keys` edit as root, chown again.
uid=$(id -u) gid=$(id -g)
if [[ $uid == 0 ]]; then
  uid=65532 gid=65532
  chown "$uid:$gid" secrets/age_identity secrets/key_pepper config/keys.yaml config/.env.age
fi
printf '# compose variables, written by setup.sh\nMOAT_UID=%s\nMOAT_GID=%s\n' "$uid" "$gid" > .env

echo
echo "Done. Start with: docker compose up --build"
echo "Then:            curl -s -XPOST localhost:8080/v1/models/iris:predict -H 'X-API-Key: <the key above>' \\"
echo "                      -H 'content-type: application/json' -d '{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}'"
