"""`Envelope`: a server response as the client returns it."""

from __future__ import annotations

from typing import Any

from sandbox.errors import error_from_envelope


class Envelope(dict[str, Any]):
    """A response envelope, ``{"code", "message", "data", "meta"}``, still a `dict`.

    Every client method returns one. It stays a plain mapping for whoever reads
    ``envelope["code"]`` or serialises it as JSON, and adds typed views and
    `raise_for_code` for whoever prefers an exception to checking the code.

    Example:
        >>> data = (await sb.execute("bash:run", {"command": "ls"})).raise_for_code().data
    """

    # No per-instance __dict__: an envelope is exactly its keys.
    __slots__ = ()

    @property
    def code(self) -> int:
        """0 on success, otherwise the error code (1xxx client, 2xxx server side)."""
        return int(self["code"])

    @property
    def message(self) -> str:
        """``"success"`` or what went wrong."""
        return str(self.get("message", ""))

    @property
    def data(self) -> Any:
        """The result when `code` is 0; details of the error otherwise (may be ``None``)."""
        return self.get("data")

    @property
    def meta(self) -> dict[str, Any]:
        """Trace id, timings, and the ``tool`` / ``session_id`` a call ran with."""
        meta = self.get("meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def ok(self) -> bool:
        """Whether `code` is 0."""
        return self.code == 0

    def raise_for_code(self) -> Envelope:
        """Return this envelope if it is a success, else raise the error it describes.

        Returns:
            This envelope, so a call can be chained: ``r.raise_for_code().data``.

        Raises:
            SandboxError: The subclass matching `code` (`InvalidParams` for 1002,
                `SessionError` for 1003, `BackendError` for 2001, `SandboxTimeout`
                for 2002, ...), carrying the message, data, tool and session id.
        """
        if self.code != 0:
            raise error_from_envelope(self)
        return self
