#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, integration tests on
# the real Docker engine included. Extra arguments go to pytest
# (e.g. -m "not docker" for the unit tests alone).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
