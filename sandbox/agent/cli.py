"""The agent's command line: read the environment, serve until SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from .config import AgentConfig
from .errors import ConfigError
from .identity import (
    HOME_TEMPLATE_ENV,
    SessionUser,
    drop_supplementary_groups,
    populate_home,
    prepare_writable_dirs,
)
from .processes import TOKEN_ENV
from .server import AgentServer

_PR_SET_DUMPABLE = 4


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until SIGTERM or SIGINT; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="sandbox-agent",
        description="Serve a sandbox's tools over HTTP, on TCP or on the Unix socket "
        "SANDBOX_AGENT_SOCKET names. Settings come from SANDBOX_AGENT_* environment "
        "variables; SANDBOX_AGENT_TOKEN is required.",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without a token when SANDBOX_AGENT_TOKEN is unset (local testing only)",
    )
    args = parser.parse_args(argv)
    try:
        config = AgentConfig.from_environ(os.environ, require_token=not args.no_auth)
        user = SessionUser.current(os.environ)
    except (ConfigError, LookupError) as exc:
        print(f"sandbox-agent: {exc}", file=sys.stderr)
        return 2
    try:
        if user is not None:
            drop_supplementary_groups()
        prepare_writable_dirs(user)
        populate_home(user, os.environ.get(HOME_TEMPLATE_ENV))
    except OSError as exc:
        print(f"sandbox-agent: cannot prepare the session user: {exc}", file=sys.stderr)
        return 2
    # Children get an environment without the token anyway; this also keeps it
    # out of anything that later reads os.environ.
    os.environ.pop(TOKEN_ENV, None)
    _hide_from_same_user()
    return _serve(config, user)


def _serve(config: AgentConfig, user: SessionUser | None) -> int:
    """Serve until SIGTERM or SIGINT; 1 if the server cannot start."""
    server = AgentServer(
        config.host,
        config.port,
        token=config.token,
        socket_path=config.socket_path,
        output_limit=config.output_limit,
        toolsets=config.toolsets,
        user=user,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server.start()
    except (ConfigError, OSError) as exc:
        print(f"sandbox-agent: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        where = server.url if config.socket_path else f"{config.host}:{server.port}"
        print(
            f"sandbox-agent listening on {where} toolsets={','.join(server.toolset_names)}",
            file=sys.stderr,
            flush=True,
        )
        # A timeout keeps the wait responsive to signals on every platform.
        while not stop.wait(1.0):
            pass
    finally:
        server.close()
    return 0


def _hide_from_same_user() -> None:
    """Make this process non-dumpable, where Linux allows it.

    Where the agent runs as the session's own user (no ``SANDBOX_AGENT_USER``),
    the session's commands could otherwise read the token from
    /proc/<agent>/environ (which keeps the initial environment whatever
    os.environ says) or ptrace the agent. A root agent gets it too: a
    non-dumpable process's /proc files stay root's whatever its credentials.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
