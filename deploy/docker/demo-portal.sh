#!/bin/sh
# The demo portal (compose service portal): read the client settings demo-seed left, then serve.
set -eu
settings="${PORTAL_SETTINGS:?PORTAL_SETTINGS names the file demo-seed writes}"
set -a
# shellcheck disable=SC1090  # the file holds RP_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET, RP_BASE_URL
. "$settings"
set +a
exec gunicorn 'relying_party_demo:create_app()' --bind 0.0.0.0:8000 --workers 2 --threads 2 \
  --access-logfile - --error-logfile - --logger-class idp.web.access_log.RedactingLogger
