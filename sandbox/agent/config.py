"""The agent's settings, read from its environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError
from .processes import TOKEN_ENV

TOKEN_FILE_ENV = "SANDBOX_AGENT_TOKEN_FILE"

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8765
DEFAULT_OUTPUT_LIMIT = 1 << 20
DEFAULT_TOOLSETS = ("shell",)
SOCKET_ENV = "SANDBOX_AGENT_SOCKET"


@dataclass(frozen=True)
class AgentConfig:
    """Settings of one agent process.

    Attributes:
        token: The bearer token every call must carry (``SANDBOX_AGENT_TOKEN``, or
            the file named by ``SANDBOX_AGENT_TOKEN_FILE``, removed once read);
            None only when authentication was switched off for local testing.
        host: Address to listen on (``SANDBOX_AGENT_HOST``).
        port: Port to listen on, 0 for any free one (``SANDBOX_AGENT_PORT``).
        output_limit: Most bytes of each output stream or file returned
            (``SANDBOX_OUTPUT_LIMIT``).
        toolsets: Toolsets to enable (``SANDBOX_AGENT_TOOLSETS``, comma-separated).
        socket_path: Absolute path of a Unix-domain socket to serve on instead of
            TCP, `host` and `port` then ignored (``SANDBOX_AGENT_SOCKET``); None
            for TCP.
    """

    token: str | None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    toolsets: tuple[str, ...] = DEFAULT_TOOLSETS
    socket_path: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, require_token: bool = True) -> AgentConfig:
        """Read the settings from `environ`.

        Raises:
            ConfigError: A value is malformed, or the token is missing while required.
        """
        token = environ.get(TOKEN_ENV) or _read_token_file(environ.get(TOKEN_FILE_ENV))
        if token is None and require_token:
            raise ConfigError(
                f"neither {TOKEN_ENV} nor {TOKEN_FILE_ENV} gives a token; refusing to serve "
                "without one"
            )
        toolsets = tuple(
            name.strip() for name in environ.get("SANDBOX_AGENT_TOOLSETS", "").split(",")
        )
        socket_path = environ.get(SOCKET_ENV) or None
        if socket_path is not None and not os.path.isabs(socket_path):
            raise ConfigError(f"{SOCKET_ENV} must be an absolute path, not {socket_path!r}")
        return cls(
            token=token,
            host=environ.get("SANDBOX_AGENT_HOST") or DEFAULT_HOST,
            port=_integer(environ, "SANDBOX_AGENT_PORT", DEFAULT_PORT, low=0, high=65535),
            output_limit=_integer(environ, "SANDBOX_OUTPUT_LIMIT", DEFAULT_OUTPUT_LIMIT, low=1),
            toolsets=tuple(name for name in toolsets if name) or DEFAULT_TOOLSETS,
            socket_path=socket_path,
        )


def _read_token_file(path: str | None) -> str | None:
    """The token in `path`, which is then removed: no later process finds it there.

    The server writes the file into the container before it starts, so the agent
    reads it before any sandboxed process exists; unlike the container's
    environment, which its init process keeps for anyone to read in /proc/1.
    """
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    with contextlib.suppress(OSError):
        os.unlink(path)
    return token or None


def _integer(
    environ: Mapping[str, str], name: str, default: int, *, low: int, high: int | None = None
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {bounds}, not {value}")
    return value
