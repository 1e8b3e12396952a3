"""The ``desktop`` toolset's file transfer: ``vm.upload_file`` and ``vm.download_file``.

Both act with the session user's file rights and keep the rules of every file
tool (`sandbox.agent.files`): no planted FIFO hangs a call, no symlink leads
where the user could not go, the agent's own /proc entries stay closed. Files
travel in base64 and are bounded by `MAX_FILE_BYTES` (16 MiB), so one call
never carries more than the server's request and reply limits admit.
"""

from __future__ import annotations

import base64
from typing import Any

from ..errors import InvalidParams
from ..files import decode_base64, read_file, resolve_path, write_file
from ..identity import SessionUser
from ..params import Params
from ..tools.desktop import MAX_FILE_BYTES

_LIMIT_TEXT = f"{MAX_FILE_BYTES >> 20} MiB ({MAX_FILE_BYTES} bytes)"


class FileTools:
    """``vm.upload_file`` and ``vm.download_file``.

    Args:
        home: The session user's home: relative paths start there.
        user: The session user whose rights the tools act with (None: the agent's own).
    """

    def __init__(self, home: str, user: SessionUser | None) -> None:
        self._home = home
        self._user = user

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {"upload_file": self.upload_file, "download_file": self.download_file}

    def upload_file(self, params: Params) -> dict[str, Any]:
        """``vm.upload_file``: `path`, `content_base64`."""
        path = self._resolve(params.path("path"))
        data = decode_base64(params.string("content_base64"), "content_base64")
        if len(data) > MAX_FILE_BYTES:
            raise InvalidParams(
                f"content_base64 holds {len(data)} bytes; at most {_LIMIT_TEXT} are allowed",
                field="content_base64",
            )
        write_file(path, data, self._user)
        return {"path": path, "size": len(data)}

    def download_file(self, params: Params) -> dict[str, Any]:
        """``vm.download_file``: `path`."""
        path = self._resolve(params.path("path"))
        data, _ = read_file(path, MAX_FILE_BYTES, self._user)
        if len(data) > MAX_FILE_BYTES:
            raise InvalidParams(
                f"cannot read {path}: it is larger than {_LIMIT_TEXT}; split it first "
                "with vm:run_command (split -b 16M)",
                field="path",
            )
        return {
            "path": path,
            "content_base64": base64.b64encode(data).decode("ascii"),
            "size": len(data),
        }

    def _resolve(self, path: str) -> str:
        return resolve_path(path, home=self._home, cwd=self._home)
