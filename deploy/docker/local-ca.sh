#!/bin/sh
# One-shot (compose service local-ca): the certificate authority behind Caddy's `tls internal`.
#
# Caddy would make its own root, but keeps it readable by root alone; the provider (back-channel
# logout to portals) and the demo portal (calls to the provider) run as a non-root user and must
# trust it. So the root is made here, once: the certificate in /ca (shared read-only), the key in
# /ca-key (mounted in Caddy alone), and Caddy signs the sites' certificates with it. Caddy keeps
# the intermediate it derives in its own volume (caddy-data): to make a new CA, remove that volume
# too, or Caddy goes on serving the old chain.
set -eu
cert="${CA_CERT_DIR:-/ca}/root.crt"
key="${CA_KEY_DIR:-/ca-key}/root.key"

if [ -s "$cert" ] && [ -s "$key" ]; then
  echo "local-ca: $cert exists"
  exit 0
fi
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=School IdP local CA (docker compose)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$key.new" -out "$cert.new"
chmod 0644 "$cert.new"
mv "$key.new" "$key"
mv "$cert.new" "$cert"
echo "local-ca: made $cert; trust it in a browser to visit the stack without warnings"
