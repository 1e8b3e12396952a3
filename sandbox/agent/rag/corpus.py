"""Corpus reading: the JSONL file of the default collection, its fingerprint and lines."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 1_000_000
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Document:
    """One passage to index."""

    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a corpus file's content, as far as rebuilding goes."""

    path: str
    size: int
    mtime_ns: int
    sha256: str = ""

    def same_file(self, other: Fingerprint) -> bool:
        """Same path, size and modification time: taken as unchanged without hashing."""
        return (self.path, self.size, self.mtime_ns) == (other.path, other.size, other.mtime_ns)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, value: Any) -> Fingerprint | None:
        """The fingerprint stored as `value`, or None if it is not one."""
        try:
            return cls(
                str(value["path"]), int(value["size"]), int(value["mtime_ns"]), str(value["sha256"])
            )
        except (KeyError, TypeError, ValueError):
            return None


def stat_fingerprint(path: str) -> Fingerprint:
    """Path, size and modification time of `path` (no hash yet).

    Raises:
        OSError: It cannot be stat'ed.
    """
    info = os.stat(path)
    return Fingerprint(os.path.abspath(path), info.st_size, info.st_mtime_ns)


def hash_and_count_lines(path: str, stop: threading.Event | None = None) -> tuple[str, int] | None:
    """The SHA-256 of `path` and its number of lines, or None if `stop` was set.

    One read serves both: the hash says whether a rebuild is needed, the count is
    the total the rebuild's progress (in lines) is measured against.

    Raises:
        OSError: It cannot be read.
    """
    digest = hashlib.sha256()
    lines = 0
    last = b"\n"
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            if stop is not None and stop.is_set():
                return None
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # a last line without its newline
    return digest.hexdigest(), lines


@dataclass
class SkippedLines:
    """Corpus lines that are not usable passages."""

    count: int = 0
    first_line: int | None = None
    first_reason: str | None = None

    def add(self, line: int, reason: str) -> None:
        """Count line `line` as skipped, remembering the first one's reason."""
        self.count += 1
        if self.first_line is None:
            self.first_line = line
            self.first_reason = reason

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"count": self.count, "first_line": self.first_line, "reason": self.first_reason}

    @classmethod
    def from_dict(cls, value: Any) -> SkippedLines:
        """The record `as_dict` made (empty if `value` is not one)."""
        if not isinstance(value, dict):
            return cls()
        return cls(int(value.get("count", 0)), value.get("first_line"), value.get("reason"))


def read_corpus(path: str, skipped: SkippedLines) -> Iterator[tuple[int, Document | None]]:
    """Each non-empty line of JSONL file `path` as (line number, passage or None if bad).

    A line must be a JSON object with a non-empty string ``text``, an ``id``
    (string, or integer taken as its decimal string) and optionally a string
    ``title``; bad lines and repeated ids are counted in `skipped`.

    AgentFlow's corpora (FlashRAG's format) load as they are: ``contents`` in
    place of ``text``, holding the title on its first line (in quotes) unless a
    ``title`` is given, and an ``id`` that may be missing (the line number then).
    """
    seen: set[str] = set()
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            document, reason = _parse_line(raw, number)
            if document is not None and document.doc_id in seen:
                reason = f"id {document.doc_id!r} repeats an earlier line"
                document = None
            if document is None:
                skipped.add(number, reason)
            else:
                seen.add(document.doc_id)
            yield number, document


def _parse_line(raw: bytes, number: int) -> tuple[Document | None, str]:
    try:
        value = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        return None, f"not JSON: {exc}"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    doc_id = value.get("id")
    if doc_id is None and "contents" in value:
        doc_id = number  # FlashRAG corpora may number passages by line alone
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_ID_CHARS:
        return None, f"id must be a string of 1 to {MAX_ID_CHARS} characters"
    title = value.get("title")
    text = value.get("text")
    if text is None and isinstance(value.get("contents"), str):
        title, text = _split_contents(value["contents"], title)
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
        return None, f"text must be a non-empty string of at most {MAX_TEXT_CHARS} characters"
    if title is None:
        title = ""
    elif not isinstance(title, str) or len(title) > MAX_TEXT_CHARS:
        return None, "title must be a string"
    try:
        # SQLite takes UTF-8 only; JSON can smuggle in lone surrogates.
        (doc_id + title + text).encode("utf-8")
    except UnicodeEncodeError:
        return None, "contains an unpaired surrogate"
    return Document(doc_id, title, text), ""


def _split_contents(contents: str, title: object) -> tuple[object, str]:
    """Title and text of a FlashRAG ``contents``: ``"Title"\\ntext`` (the title's
    quotes dropped), or all text where a ``title`` is given or no newline is."""
    head, newline, body = contents.partition("\n")
    if title is not None or not newline or not body.strip():
        return title, contents
    return head.strip().strip('"').strip(), body
