#!/usr/bin/env bash
# Every test (the README's second command): lint, types, then pytest on SQLite and PostgreSQL
# with the machine's real Redis and real gunicorn processes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

require() {
  local name=$1; shift
  if ! "$@" >/dev/null 2>&1; then
    echo "test: $name is not reachable; the tests need it (see README, 'Running the tests')." >&2
    exit 2
  fi
}
require "PostgreSQL at 127.0.0.1:5432" "$BIN/python" -c \
  "import psycopg; psycopg.connect('postgresql://postgres@127.0.0.1:5432/test', connect_timeout=3).close()"
require "Redis at 127.0.0.1:6379" "$BIN/python" -c \
  "import redis; redis.Redis(host='127.0.0.1', port=6379, socket_timeout=3).ping()"

# The browser tests drive Debian's Chromium (never a browser build that Playwright downloads);
# the deployment tests check the shipped Caddyfile with Debian's Caddy; the multi-instance tests
# start their own PgBouncer and Redis Sentinel from Debian's packages.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v caddy >/dev/null || missing+=(caddy)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

# axe-core for the accessibility tests, from npm at the version the lock file pins (once);
# without node and npm those tests skip and say why.
if [ ! -f tests/e2e/axe/node_modules/axe-core/axe.min.js ]; then
  if command -v npm >/dev/null; then
    npm ci --prefix tests/e2e/axe --no-audit --no-fund
  else
    echo "test: npm is not installed; the axe-core accessibility tests will be skipped." >&2
  fi
fi

"$BIN/ruff" check idp relying_party_demo tests bench
"$BIN/ruff" format --check idp relying_party_demo tests bench
"$BIN/mypy"
# Compiled modules are cached even where PYTHONDONTWRITEBYTECODE is set: the end-to-end tests
# start dozens of gunicorn, worker and portal processes, each of which would compile them again.
unset PYTHONDONTWRITEBYTECODE
# One worker more than the cores: an end-to-end test spends much of its time waiting on the
# processes it started, which another worker's tests fill (docs/performance.md, "The test suite").
# Each end-to-end backend of a module stays on one worker (tests/e2e/conftest.py).
"$BIN/pytest" -n "$(( $(nproc) + 1 ))" --dist loadgroup "$@"
