#!/bin/sh
# The image's entrypoint: trust one more certificate authority, then run the command.
#
# EXTRA_CA_CERT names a PEM file: in the compose stack, the root of the local CA behind Caddy's
# `tls internal` (deploy/docker/local-ca.sh). The provider calls portals' back-channel logout
# URIs, and the demo portal calls the provider, through the proxy, so both must trust that root
# besides the public ones: the system bundle plus that file become the bundle of Python's ssl
# (SSL_CERT_FILE) and of requests (REQUESTS_CA_BUNDLE). A district whose certificates come from a
# public CA leaves it unset; one whose SMTP relay has a private CA may point it there.
set -eu

if [ -n "${EXTRA_CA_CERT:-}" ]; then
  if [ ! -s "$EXTRA_CA_CERT" ]; then
    echo "entrypoint: EXTRA_CA_CERT=$EXTRA_CA_CERT is missing or empty" >&2
    exit 1
  fi
  bundle="${TMPDIR:-/tmp}/ca-bundle.pem"
  cat /etc/ssl/certs/ca-certificates.crt "$EXTRA_CA_CERT" > "$bundle"
  export SSL_CERT_FILE="$bundle" REQUESTS_CA_BUNDLE="$bundle"
fi

exec "$@"
