"""One HTTP request to the agent: authentication, the body, the tool call, the answer.

``GET /stream/<name>?<query>`` with ``Upgrade: sandbox-stream`` (and the token)
turns the connection into a raw byte stream a toolset serves (the desktop's
VNC view: see `registry.Stream`): the answer is ``101 Switching Protocols``
and the connection is the stream's until it ends. The caller sends nothing
after its request until it has read that answer, so no byte of the stream
sits unread in this handler's buffer.

Answers are JSON: ``{"ok": true, "data": {...}}`` or
``{"ok": false, "error": {"kind", "message", "field", "data"}}`` with the HTTP
status of the error kind (see `errors`). Each answer goes out in a single write,
so no small response waits ~40 ms on a delayed ACK.
"""

from __future__ import annotations

import hmac
import json
import socket
import sys
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .errors import InvalidParams, RequestTooLarge, ToolError, ToolNotFound, Unauthorized
from .params import Params

if TYPE_CHECKING:
    from .listener import AgentHTTPServer

MAX_BODY_BYTES = 64 << 20
_CALL_PREFIX = "/call/"
_STREAM_PREFIX = "/stream/"
STREAM_UPGRADE = "sandbox-stream"
"""The ``Upgrade`` protocol name of a stream request."""
_MAX_STREAM_QUERY_CHARS = 1024


class RequestHandler(BaseHTTPRequestHandler):
    """Serves ``GET /health`` and ``POST /call/<tool>`` on one kept-alive connection."""

    protocol_version = "HTTP/1.1"
    server: AgentHTTPServer

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
        self._respond(code, encode_json(error.to_body()), close=True)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/health":
            self._respond(200, self.server.health_body)
        elif path.startswith(_STREAM_PREFIX):
            self._stream(path[len(_STREAM_PREFIX) :], query)
        else:
            self._respond_error(ToolNotFound(f"no route {self.path}"))

    def _stream(self, name: str, query: str) -> None:
        """Upgrade the connection to the stream `name` and serve it until it ends."""
        try:
            if not self._authorized():
                raise Unauthorized("missing or wrong bearer token")
            if self.headers.get("Upgrade", "").strip().lower() != STREAM_UPGRADE:
                raise InvalidParams(f"a stream needs the header 'Upgrade: {STREAM_UPGRADE}'")
            if len(query) > _MAX_STREAM_QUERY_CHARS:
                raise InvalidParams(f"the query is over {_MAX_STREAM_QUERY_CHARS} characters")
            fields = dict(parse_qsl(query, max_num_fields=16))
            stream = self.server.registry.stream(name)(fields)
        except ValueError:  # parse_qsl: too many fields
            self._respond_error(InvalidParams("the query has too many fields"))
            return
        except ToolError as exc:
            self._respond_error(exc)
            return
        self.close_connection = True
        try:
            self.wfile.write(
                f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {STREAM_UPGRADE}\r\n"
                "Connection: Upgrade\r\n\r\n".encode("latin-1")
            )
            stream.run(self.connection)
        except OSError:
            pass  # the caller went away: the stream is over
        except ToolError as exc:  # after the upgrade there is nobody to answer
            self.log_error("stream %s failed: %s", name, exc)
        finally:
            stream.release()

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
            data = tool.handler(Params(parse_params(body)))
        except ToolError as exc:
            self._respond_error(exc)
            return
        except Exception as exc:
            print(f"sandbox-agent: {self.path} failed", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            self._respond_error(ToolError(f"{type(exc).__name__}: {exc}"))
            return
        self._respond(200, encode_json({"ok": True, "data": data}))

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
        self._respond(error.status, encode_json(error.to_body()))

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


def parse_params(body: bytes) -> dict[str, Any]:
    """The JSON object of a call's parameters; an empty body is no parameters.

    Raises:
        InvalidParams: The body is not JSON, or not an object.
    """
    if not body.strip():
        return {}
    try:
        params = json.loads(body)
    except ValueError as exc:
        raise InvalidParams(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise InvalidParams("the request body must be a JSON object of parameters")
    return params


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """`payload` as compact UTF-8 JSON."""
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate somewhere (an echoed path); escaped JSON is still valid.
        return json.dumps(payload, separators=(",", ":")).encode("ascii")
