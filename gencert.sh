#!/usr/bin/env bash
# Make a self-signed TLS certificate for HTTPS/WSS: certs/server.crt and certs/server.key.
# Usage: ./gencert.sh [hostname-or-ip ...]    (default names: localhost 127.0.0.1)
#        CERT_DIR=/path/to/certs ./gencert.sh  (write somewhere else than ./certs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
python3 -m gateway.web.gencert "${CERT_DIR:-$here/certs}" "$@"
