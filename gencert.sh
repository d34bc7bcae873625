#!/usr/bin/env bash
# Make a self-signed TLS certificate for HTTPS/WSS in certs/ (server.crt, server.key).
# Usage: ./gencert.sh [hostname-or-ip ...]   (default: localhost 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")"
python3 -m gateway.gencert certs "$@"
