#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the server on 127.0.0.1:18890.
# Extra arguments go to `sandbox serve` (--host, --port, --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/sandbox serve "$@"
