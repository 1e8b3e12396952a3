"""``python3 -m sandbox_agent`` (in images) or ``python -m sandbox.agent`` (on a host)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
