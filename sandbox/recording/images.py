"""Images in recorded results: found cheaply, stored once by content, referenced.

A screenshot is most of a step's bytes, and an agent takes the same one often (an
unchanged screen), so each image is written once as a file named by the SHA-256
of its bytes, and the step keeps ``{"$image": "<sha256>", "format": "png"}``.

Only strings that start like base64 PNG or JPEG and are long enough to be one are
decoded; every other value is left as it is without being decoded.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
from pathlib import Path
from typing import Any

IMAGE_KEY = "$image"
"""The key of an image reference in a recorded step."""

_PREFIXES = (("iVBORw0KGgo", "png"), ("/9j/", "jpeg"))
_MIN_CHARS = 64
"""Shorter strings are no real image; they stay inline."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: str) -> bool:
    """Whether `value` is a lower-case hex SHA-256, as image names are."""
    return _SHA256.fullmatch(value) is not None


def _image_format(value: str) -> str | None:
    if len(value) < _MIN_CHARS:
        return None
    for prefix, fmt in _PREFIXES:
        if value.startswith(prefix):
            return fmt
    return None


class ImageFiles:
    """Content-addressed image files under one directory.

    Args:
        root: Directory of the files (``<root>/<sha[:2]>/<sha>.<format>``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str, fmt: str) -> Path:
        """Where the image `sha256` of format `fmt` lives."""
        return self.root / sha256[:2] / f"{sha256}.{fmt}"

    def find(self, sha256: str) -> Path | None:
        """The file of image `sha256`, if stored."""
        if not is_sha256(sha256):
            return None
        for _, fmt in _PREFIXES:
            path = self.path(sha256, fmt)
            if path.is_file():
                return path
        return None

    def put(self, raw: bytes, fmt: str) -> str:
        """Store `raw` unless already there; its SHA-256."""
        sha256 = hashlib.sha256(raw).hexdigest()
        path = self.path(sha256, fmt)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            # Written whole under a temporary name, so a crash never leaves a
            # truncated file under the final (content-derived) name.
            partial = path.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(raw)
            partial.replace(path)
        return sha256

    def remove(self, sha256: str) -> int:
        """Delete image `sha256`; the bytes freed."""
        path = self.find(sha256)
        if path is None:
            return 0
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        return size

    def size(self, sha256: str) -> int:
        """Bytes of image `sha256` (0 when absent)."""
        path = self.find(sha256)
        return path.stat().st_size if path is not None else 0

    def extract(self, value: Any, found: dict[str, int]) -> Any:
        """`value` with every base64 PNG/JPEG string replaced by a reference.

        `value` is not changed (the response may still be serialising it); what
        changed is copied. Each image stored is added to `found` with its size.
        """
        if isinstance(value, str):
            fmt = _image_format(value)
            if fmt is None:
                return value
            try:
                raw = binascii.a2b_base64(value)
            except binascii.Error:
                return value
            sha256 = self.put(raw, fmt)
            found[sha256] = len(raw)
            return {IMAGE_KEY: sha256, "format": fmt}
        if isinstance(value, dict):
            return {key: self.extract(item, found) for key, item in value.items()}
        if isinstance(value, list):
            return [self.extract(item, found) for item in value]
        return value

    def inline(self, value: Any) -> Any:
        """`value` with every image reference replaced by the image's base64 again."""
        if isinstance(value, dict):
            sha256 = value.get(IMAGE_KEY)
            if isinstance(sha256, str) and len(value) == 2 and "format" in value:
                path = self.find(sha256)
                if path is not None:
                    return binascii.b2a_base64(path.read_bytes(), newline=False).decode()
                return value
            return {key: self.inline(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.inline(item) for item in value]
        return value
