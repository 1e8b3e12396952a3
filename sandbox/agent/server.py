"""The agent's HTTP server: ``GET /health`` and ``POST /call/<tool>``.

Every tool call crosses this server, so it is built for latency: connections stay
open (HTTP/1.1), Nagle is off on every accepted TCP socket, and each response goes
out in a single write, so no small response waits ~40 ms on a delayed ACK.

It listens on TCP, or on a Unix-domain socket when given a path: a session without
a network reaches its agent through a socket file in a bind-mounted directory.

Answers are JSON: ``{"ok": true, "data": {...}}`` or
``{"ok": false, "error": {"kind", "message", "field", "data"}}`` with the HTTP
status of the error kind (see `errors`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import shutil
import socket
import socketserver
import stat
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .config import DEFAULT_OUTPUT_LIMIT, DEFAULT_TOOLSETS
from .errors import (
    ConfigError,
    InvalidParams,
    RequestTooLarge,
    ToolError,
    ToolNotFound,
    Unauthorized,
)
from .identity import SessionUser, acting_as, session_environment
from .params import Params
from .processes import child_environment
from .registry import AgentContext, ToolRegistry, build_registry

MAX_BODY_BYTES = 64 << 20
# Whoever connects may run as another uid than the agent; the token, not the file
# mode, is what keeps strangers out.
UNIX_SOCKET_MODE = 0o666
_ACCEPT_BACKOFF_S = 0.01
_CALL_PREFIX = "/call/"


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
        self._httpd: _HTTPServer | None = None
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
            self._httpd = _HTTPServer(address, self._registry, self._token)
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


class _HTTPServer(ThreadingHTTPServer):
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
        self.health_body = _encode_json(
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
        super().__init__(address, _Handler)  # type: ignore[arg-type]

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
        _clear_socket_path(path)
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        if self.connection.family != socket.AF_UNIX:  # Unix sockets have no Nagle
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per call on the hot path is noise; errors are still logged

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        # The base class takes client_address[0]; a Unix-socket peer's address is
        # a string (empty for an unnamed client socket), not (host, port).
        if isinstance(self.client_address, tuple):
            return str(self.client_address[0])
        return f"unix:{self.client_address or self.server.server_name}"

    def log_error(self, format: str, *args: Any) -> None:
        print(f"sandbox-agent: {self.address_string()}: {format % args}", file=sys.stderr)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed requests (bad request line, oversized headers, unknown method).
        self.log_error("%d %s", code, message or "")
        error_type = {400: InvalidParams, 404: ToolNotFound}.get(code, ToolError)
        error = error_type(message or f"HTTP {code}")
        self._respond(code, _encode_json(error.to_body()), close=True)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/health":
            self._respond(200, self.server.health_body)
        else:
            self._respond_error(ToolNotFound(f"no route {self.path}"))

    def do_POST(self) -> None:
        try:
            if not self._authorized():
                # Read a small body so the connection stays usable (and the client
                # sees this answer rather than a reset); close on a large one.
                self._discard_body()
                raise Unauthorized("missing or wrong bearer token")
            try:
                body = self._read_body()
            except (ConnectionError, TimeoutError):
                body = None
            if body is None:
                self.close_connection = True
                return  # the client hung up mid-body: nobody to answer
            path = self.path.split("?", 1)[0]
            if not path.startswith(_CALL_PREFIX):
                raise ToolNotFound(f"no route {path}")
            tool = self.server.registry.get(path[len(_CALL_PREFIX) :])
            data = tool.handler(Params(_parse_params(body)))
        except ToolError as exc:
            self._respond_error(exc)
            return
        except Exception as exc:
            print(f"sandbox-agent: {self.path} failed", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            self._respond_error(ToolError(f"{type(exc).__name__}: {exc}"))
            return
        self._respond(200, _encode_json({"ok": True, "data": data}))

    def _authorized(self) -> bool:
        expected = self.server.expected_token
        if expected is None:
            return True
        scheme, _, credentials = self.headers.get("Authorization", "").strip().partition(" ")
        # Headers arrive decoded as latin-1, so this gives back the bytes sent.
        given = credentials.strip().encode("latin-1", "replace")
        return hmac.compare_digest(given, expected) and scheme.lower() == "bearer"

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked or not 0 <= length <= 1 << 20:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    def _read_body(self) -> bytes | None:
        """The request body, or None when the client closed the connection early."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise InvalidParams(f"invalid Content-Length {raw_length!r}")
        if length > MAX_BODY_BYTES:
            raise self._too_large()
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                self.close_connection = True
                return None
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise InvalidParams("malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer headers: ignored
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise self._too_large()
            chunk = self.rfile.read(size)
            self.rfile.readline(1024)
            if len(chunk) < size:
                self.close_connection = True
                return None
            parts.append(chunk)

    def _too_large(self) -> RequestTooLarge:
        # The rest of the body is not worth reading just to keep the connection.
        self.close_connection = True
        return RequestTooLarge(f"the request body is over {MAX_BODY_BYTES} bytes")

    def _respond_error(self, error: ToolError) -> None:
        self._respond(error.status, _encode_json(error.to_body()))

    def _respond(self, status: int, body: bytes, *, close: bool = False) -> None:
        if close:
            self.close_connection = True
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        connection = "Connection: close\r\n" if self.close_connection else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{connection}\r\n"
        )
        # One write: headers and body in one segment, nothing left for Nagle to hold.
        self.wfile.write(head.encode("latin-1") + body)


def _clear_socket_path(path: str) -> None:
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


def _memory_tmp() -> str | None:
    """/dev/shm where usable, else None (the default temporary directory).

    Every command rewrites two small files in the state directory; on tmpfs that
    costs a few microseconds, on a container's overlay filesystem a few hundred.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _parse_params(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        params = json.loads(body)
    except ValueError as exc:
        raise InvalidParams(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise InvalidParams("the request body must be a JSON object of parameters")
    return params


def _encode_json(payload: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate somewhere (an echoed path); escaped JSON is still valid.
        return json.dumps(payload, separators=(",", ":")).encode("ascii")
