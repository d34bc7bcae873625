#!/usr/bin/env bash
# Install everything the tests need (Debian packages, pip extras), check lint, format and
# types, and run the suite.
# Usage: bash scripts/test.sh [pytest args]   e.g. -m unit (fast tests, under a minute),
#        -k ws_live, tests/test_hls.py
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "checks: ruff check, ruff format --check, mypy (gateway/)"
python3 -m ruff check --quiet gateway
python3 -m ruff format --check --quiet gateway
python3 -m mypy
exec python3 -m pytest -q "$@"
