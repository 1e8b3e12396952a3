"""Files answered from a descriptor the route opened, never from a path looked up later.

`FileResponse` opens its path again when the response is sent, after the route
has returned: a file deleted in between (retention, a DELETE, a prune) ends in
a 500 once the status line may already be out. Opening the file in the route
settles it there: gone, the route answers its own not-found envelope; open, the
file is sent whole even if its name is deleted meanwhile. (No byte ranges: the
files sent so, videos and recorded images, are downloaded whole.)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from fastapi.responses import StreamingResponse

_CHUNK_BYTES = 64 * 1024


def open_file_response(
    path: Path, *, media_type: str, headers: Mapping[str, str] | None = None
) -> StreamingResponse | None:
    """A response sending the regular file at `path`, or None if there is none.

    Blocking (it opens the file): call it from a plain route function, which
    runs in the thread pool; the body is read in the thread pool too.
    """
    try:
        file = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    status = os.fstat(file.fileno())
    if not stat.S_ISREG(status.st_mode):
        file.close()
        return None
    return StreamingResponse(
        _chunks(file, status.st_size),
        media_type=media_type,
        headers={**(headers or {}), "Content-Length": str(status.st_size)},
    )


def _chunks(file: BinaryIO, size: int) -> Iterator[bytes]:
    """The file's first `size` bytes (as many as its Content-Length says), then closed."""
    with file:
        remaining = size
        while remaining > 0:
            chunk = file.read(min(_CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
