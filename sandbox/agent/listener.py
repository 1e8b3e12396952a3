"""The agent's listening socket: TCP or a Unix socket, one thread per connection.

Connections stay open (HTTP/1.1) and Nagle is off on every accepted TCP socket
(see `handler`). A session without a network reaches its agent through a socket
file in a bind-mounted directory; binding there replaces a stale file a previous
agent left, and closing removes only the file this server bound.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import stat
import sys
import threading
import time
import traceback
from http.server import ThreadingHTTPServer
from typing import Any

from .errors import ConfigError
from .handler import RequestHandler, encode_json
from .registry import ToolRegistry

# Whoever connects may run as another uid than the agent; the token, not the file
# mode, is what keeps strangers out.
UNIX_SOCKET_MODE = 0o666
_ACCEPT_BACKOFF_S = 0.01


class AgentHTTPServer(ThreadingHTTPServer):
    """Serves `registry`'s tools to callers holding `token` (None: anyone) at `address`.

    Args:
        address: ``(host, port)`` for TCP, or the path of a Unix socket.
        registry: The tools.
        token: The bearer token calls must carry; None turns authentication off.

    Raises:
        ConfigError: The Unix socket cannot be created.
        OSError: The TCP address cannot be bound.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int] | str, registry: ToolRegistry, token: str | None
    ) -> None:
        if isinstance(address, str):
            self.address_family = socket.AF_UNIX
        elif ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.registry = registry
        self.expected_token = None if token is None else token.encode("utf-8")
        self.health_body = encode_json(
            {"status": "ok", "toolsets": registry.toolset_names, "tools": registry.tool_names}
        )
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stopping = False
        # (st_dev, st_ino) of the socket file this server bound, so `server_close`
        # removes that file and never one another process has put there since.
        self._socket_file: tuple[int, int] | None = None
        # typeshed types a TCPServer address as (host, port), yet the standard
        # library's own UnixStreamServer is a TCPServer given a path.
        super().__init__(address, RequestHandler)  # type: ignore[arg-type]

    def serve_until_stopped(self) -> None:
        """Accept connections, each served by its own thread, until `stop`.

        Replaces `serve_forever`, whose poll loop wakes the process several times
        a second for nothing and makes `shutdown` wait for its next wakeup.
        """
        while not self._stopping:
            try:
                request, client_address = self.get_request()
            except OSError:
                # `stop` shut the socket, or accept failed (out of descriptors):
                # back off rather than spin.
                if not self._stopping:
                    time.sleep(_ACCEPT_BACKOFF_S)
                continue
            if self._stopping:
                self.shutdown_request(request)
                break
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)

    def stop(self) -> None:
        """Make `serve_until_stopped` return; wakes a blocked accept at once."""
        self._stopping = True
        # On Linux, shutting a listening socket down fails a pending accept().
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_UNIX:
            self._bind_unix(str(self.server_address))
            return
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on DNS
        # in a container; the name is never used.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def _bind_unix(self, path: str) -> None:
        clear_socket_path(path)
        try:
            self.socket.bind(path)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on the unix socket {path}: {exc.strerror or exc}"
            ) from exc
        info = os.stat(path)
        self._socket_file = (info.st_dev, info.st_ino)
        # Before listen(): no client can try to connect while the mode is still
        # the umask's.
        os.chmod(path, UNIX_SOCKET_MODE)
        self.server_name = path
        self.server_port = 0

    def server_close(self) -> None:
        super().server_close()
        socket_file, self._socket_file = self._socket_file, None
        if socket_file is None:
            return
        path = str(self.server_address)
        with contextlib.suppress(OSError):
            info = os.lstat(path)
            if (info.st_dev, info.st_ino) == socket_file:
                os.unlink(path)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their threads return."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away; nothing to tell anyone
        # A Unix-socket peer's address is usually '' (unnamed); name the socket then.
        peer = client_address or f"unix:{self.server_name}"
        print(f"sandbox-agent: error serving {peer}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)


def clear_socket_path(path: str) -> None:
    """Make way for binding a Unix socket at `path`, or say clearly why not.

    A restarted container finds its previous agent's socket file still there;
    nobody listens on it any more, so it is removed.

    Raises:
        ConfigError: The directory is missing or not writable, another process
            listens at `path`, or a file that is not a socket is there.
    """
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigError(
            f"cannot listen on the unix socket {path}: the directory {directory} does not exist"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot listen on the unix socket {path}: the directory {directory} is not writable"
        )
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"cannot listen on the unix socket {path}: a non-socket file is there")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
            live = True
        except TimeoutError:
            live = True  # a listener with a full backlog
        except OSError:
            live = False  # refused: nobody accepts there any more
    if live:
        raise ConfigError(
            f"cannot listen on the unix socket {path}: another process is listening there"
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
