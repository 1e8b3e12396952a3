"""Healthcheck of the server image: exit 0 when ``/health`` says the server is ok.

"ok" means the API answers and the Docker engine behind the mounted socket does
too; a server that answers but cannot reach Docker reports "degraded" and counts
as unhealthy here. The port is ``SANDBOX_PORT`` (default 18890).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("SANDBOX_PORT", "18890")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as response:
            body = json.load(response)
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {exc}")
        return 1
    status = (body.get("data") or {}).get("status")
    print(f"health: {status}")
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
