#!/usr/bin/env bash
# Run the provider with a seeded demo district on SQLite (the README's first command).
# Idempotent: a second run keeps the data and prints fresh demo-portal settings.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

export IDP_ENV="${IDP_ENV:-development}"
export IDP_ISSUER="${IDP_ISSUER:-http://127.0.0.1:5000}"
export IDP_DATABASE_URL="${IDP_DATABASE_URL:-sqlite:///idp.db}"
# No Redis needed for a demo: counters live in the one provider process.
export IDP_REDIS_URL="${IDP_REDIS_URL:-memory://}"
PORT="${IDP_PORT:-5000}"

"$BIN/idp" db upgrade
"$BIN/idp" demo seed

if [[ "$IDP_REDIS_URL" == memory://* ]]; then
  workers=1   # memory:// counters are per process: one process, several threads
else
  workers=2
fi
echo
echo "Provider listening on $IDP_ISSUER (Ctrl-C stops it)."
exec "$BIN/gunicorn" 'idp:create_app()' \
  --bind "127.0.0.1:$PORT" --workers "$workers" --threads 4 \
  --no-control-socket --access-logfile - --error-logfile -
