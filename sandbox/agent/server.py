"""The agent's HTTP server: ``GET /health`` and ``POST /call/<tool>``.

Every tool call crosses this server, so it is built for latency: connections stay
open (HTTP/1.1), Nagle is off on every accepted TCP socket, and each response goes
out in a single write, so no small response waits ~40 ms on a delayed ACK.

It listens on TCP, or on a Unix-domain socket when given a path: a session without
a network reaches its agent through a socket file in a bind-mounted directory.

This module starts and stops it all (toolsets, state directory, serving thread);
`listener` holds the listening socket and its connections, `handler` answers
one request.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence

from .config import DEFAULT_OUTPUT_LIMIT, DEFAULT_TOOLSETS
from .errors import ConfigError
from .handler import MAX_BODY_BYTES
from .identity import SessionUser, acting_as, session_environment
from .listener import UNIX_SOCKET_MODE, AgentHTTPServer
from .processes import child_environment
from .registry import AgentContext, ToolRegistry, build_registry

__all__ = ["MAX_BODY_BYTES", "UNIX_SOCKET_MODE", "AgentServer"]


class AgentServer:
    """The agent: its toolsets behind an HTTP server running in a background thread.

    Args:
        host: Address to listen on (ignored with `socket_path`).
        port: Port to listen on; 0 picks a free one (see `port` after `start`).
            Ignored with `socket_path`.
        token: The bearer token calls must carry; None turns authentication off
            (for local testing only).
        socket_path: Absolute path of a Unix-domain socket to listen on instead of
            TCP. A stale socket file there is replaced; the new one is made
            readable and writable by everyone (mode 0o666) and removed on `close`.
        output_limit: Most bytes of each output stream or file returned to a caller.
        toolsets: Names of the toolsets to enable.
        home: The first working directory of shells and programs, and their
            ``$HOME``; the user's home, else the environment's ``$HOME``, if None.
        environ: The environment processes inherit (minus the agent's settings);
            ``os.environ`` at `start` if None.
        user: Who the session's processes run as, and whose rights file tools
            use (None: this process's own user).

    Raises:
        ConfigError: `token` is empty, `output_limit` not positive, or
            `socket_path` not absolute.

    Example:
        >>> with AgentServer("127.0.0.1", 0, token="secret") as agent:  # doctest: +SKIP
        ...     print(agent.url)
        >>> server = AgentServer(token="secret", socket_path="/run/agent/agent.sock")
        >>> with server as agent:  # doctest: +SKIP
        ...     print(agent.url)  # unix:///run/agent/agent.sock
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None,
        socket_path: str | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        toolsets: Sequence[str] = DEFAULT_TOOLSETS,
        home: str | None = None,
        environ: Mapping[str, str] | None = None,
        user: SessionUser | None = None,
    ) -> None:
        if token is not None and not token:
            raise ConfigError("the token must not be empty (pass None to turn auth off)")
        if output_limit < 1:
            raise ConfigError("output_limit must be at least 1 byte")
        if socket_path is not None and not os.path.isabs(socket_path):
            raise ConfigError(f"the socket path must be absolute, not {socket_path!r}")
        self._host = host
        self._requested_port = port
        self._token = token
        self._socket_path = socket_path
        self._output_limit = output_limit
        self._toolsets = tuple(toolsets)
        self._home = home
        self._environ = environ
        self._user = user
        self._httpd: AgentHTTPServer | None = None
        self._registry: ToolRegistry | None = None
        self._state_dir: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked when 0 was asked for).

        Raises:
            RuntimeError: The server is not started, or listens on a Unix socket.
        """
        if self._socket_path is not None:
            raise RuntimeError(
                f"the agent server listens on the unix socket {self._socket_path}, "
                "not on a TCP port"
            )
        if self._httpd is None:
            raise RuntimeError("the agent server is not started")
        return int(self._httpd.server_address[1])

    @property
    def socket_path(self) -> str | None:
        """The Unix socket listened on, or None when serving TCP."""
        return self._socket_path

    @property
    def url(self) -> str:
        """``http://host:port``, or ``unix:///path`` on a Unix socket, of the running server."""
        if self._socket_path is not None:
            if self._httpd is None:
                raise RuntimeError("the agent server is not started")
            return f"unix://{self._socket_path}"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def toolset_names(self) -> list[str]:
        """The enabled toolsets."""
        return self._registry.toolset_names if self._registry else []

    def start(self) -> None:
        """Start the toolsets (the shell), bind, and serve in a background thread.

        Raises:
            ConfigError: A toolset is unknown, or the Unix socket cannot be created
                (its directory is missing or not writable, another agent listens
                there, or something other than a socket is in the way).
            OSError: The TCP address cannot be bound.
        """
        if self._httpd is not None:
            raise RuntimeError("the agent server is already started")
        environ = os.environ if self._environ is None else self._environ
        user = self._user
        default_home = user.home if user is not None else environ.get("HOME")
        home = self._home or default_home or os.path.expanduser("~")
        try:
            # The session user's: its shell reads the command files written here
            # and writes its exported variables back (nothing the agent trusts).
            with acting_as(user):
                self._state_dir = tempfile.mkdtemp(prefix="sandbox-agent-", dir=_memory_tmp())
            child_env = session_environment(child_environment(environ), user)
            if self._home is not None:
                child_env["HOME"] = home  # so `~` in a command means the same home
            context = AgentContext(
                home=home,
                state_dir=self._state_dir,
                output_limit=self._output_limit,
                child_env=child_env,
                user=user,
            )
            self._registry = build_registry(self._toolsets, context)
            address = self._socket_path or (self._host, self._requested_port)
            self._httpd = AgentHTTPServer(address, self._registry, self._token)
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(
            target=self._httpd.serve_until_stopped, name="sandbox-agent-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, drop open connections, kill the shell; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stop()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            httpd.server_close()
            httpd.close_connections()
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.close()
        state_dir, self._state_dir = self._state_dir, None
        if state_dir is not None:
            with acting_as(self._user):
                shutil.rmtree(state_dir, ignore_errors=True)

    def __enter__(self) -> AgentServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _memory_tmp() -> str | None:
    """/dev/shm where usable, else None (the default temporary directory).

    Every command rewrites two small files in the state directory; on tmpfs that
    costs a few microseconds, on a container's overlay filesystem a few hundred.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
