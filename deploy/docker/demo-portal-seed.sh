#!/bin/sh
# One-shot (compose service demo-seed): register the demo district and its portal once, and leave
# the portal's client settings in PORTAL_SETTINGS for the portal service to read.
#
# `idp demo seed` gives the portal's client a fresh secret on every run, so it runs only while no
# settings file exists: a second `docker compose up` keeps the secret the running portal holds.
# Delete the file (or the volume) to seed again.
set -eu
settings="${PORTAL_SETTINGS:?PORTAL_SETTINGS names the file the portal reads}"

if [ -s "$settings" ]; then
  echo "demo-seed: $settings exists; the demo district was seeded before."
  exit 0
fi
summary="$(idp demo seed --rp-base-url "${RP_BASE_URL:?set RP_BASE_URL}")"
# The settings (with the client secret) go to the file only; the rest of the summary (demo
# accounts, Access IDs) to the log, for whoever tries the demo.
printf '%s\n' "$summary" | grep -v 'RP_CLIENT_SECRET='
umask 077
printf '%s\n' "$summary" | sed -n 's/^[[:space:]]*\(RP_[A-Z_]*=[^[:space:]]*\)$/\1/p' > "$settings.new"
grep -q '^RP_CLIENT_SECRET=' "$settings.new" || {
  echo "demo-seed: idp demo seed printed no RP_CLIENT_SECRET" >&2
  exit 1
}
mv "$settings.new" "$settings"
