#!/usr/bin/env bash
# Run the provider and the demo portal with a seeded demo district on SQLite (the README's first command).
# Idempotent: a second run keeps the data and gives the demo portal a fresh client secret.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

export IDP_ENV="${IDP_ENV:-development}"
export IDP_ISSUER="${IDP_ISSUER:-http://127.0.0.1:5000}"
export IDP_DATABASE_URL="${IDP_DATABASE_URL:-sqlite:///idp.db}"
# No Redis needed for a demo: counters live in the one provider process.
export IDP_REDIS_URL="${IDP_REDIS_URL:-memory://}"
PORT="${IDP_PORT:-5000}"
RP_PORT="${RP_PORT:-5001}"
RP_BASE_URL="${RP_BASE_URL:-http://127.0.0.1:$RP_PORT}"

"$BIN/idp" db upgrade
seed_output="$("$BIN/idp" demo seed --rp-base-url "$RP_BASE_URL")"
echo "$seed_output"
# The seed prints the portal's settings as NAME=value lines; the portal reads them from its environment.
while IFS= read -r line; do
  if [[ $line =~ ^[[:space:]]+(RP_ISSUER|RP_CLIENT_ID|RP_CLIENT_SECRET|RP_BASE_URL)=([^[:space:]]+)$ ]]; then
    export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
  fi
done <<< "$seed_output"
if [[ -z "${RP_CLIENT_SECRET:-}" ]]; then
  echo "demo: 'idp demo seed' printed no RP_CLIENT_SECRET for the demo portal." >&2
  exit 1
fi

if [[ "$IDP_REDIS_URL" == memory://* ]]; then
  workers=1   # memory:// counters are per process: one process, several threads
else
  workers=2
fi

# Both servers run in the background; whichever way this script ends, it stops both.
pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# idp.gunicorn_conf: one log line per request from the app itself, metrics across the workers.
"$BIN/gunicorn" 'idp:create_app()' --config python:idp.gunicorn_conf \
  --bind "127.0.0.1:$PORT" --workers "$workers" --threads 4 --no-control-socket &
pids+=("$!")
# The portal's sessions are rows in its own SQLite database: any number of workers share them.
"$BIN/gunicorn" 'relying_party_demo:create_app()' \
  --bind "127.0.0.1:$RP_PORT" --workers 2 --threads 2 \
  --no-control-socket --access-logfile - --error-logfile - \
  --logger-class idp.web.access_log.RedactingLogger &
pids+=("$!")
# The worker answers "Having trouble signing in?" and sends the outbox: with IDP_SMTP_URL
# unset, as .eml files in instance/outbox/.
"$BIN/idp" worker &
pids+=("$!")

echo
echo "Provider listening on $IDP_ISSUER"
echo "Mail (verification, recovery, notices) is written to instance/outbox/ as .eml files."
echo "Demo portal listening on $RP_BASE_URL (open it and choose Sign In)"
echo "Ctrl-C stops both."
# When either server stops, stop the other one too.
status=0
wait -n || status=$?
exit "$status"
