"""The rag service's settings, read from its environment (``SANDBOX_RAG_*``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..tools.rag import MAX_DOCUMENTS_PER_CALL
from .query import SCORED_ROWS_BUDGET

DEFAULT_DB = "/data/index.sqlite3"
DEMO_CORPUS = "/opt/rag/demo-corpus.jsonl"
IMAGE_MODEL = "/opt/rag/model"
DEFAULT_SESSION_MAX_BYTES = 256 << 20
DEFAULT_RESPONSE_MAX_CHARS = 8_000_000


@dataclass(frozen=True)
class RagSettings:
    """Where the index lives, what the default collection is built from, and bounds.

    Attributes:
        db: The SQLite file (``SANDBOX_RAG_DB``); session files go in the
            directory ``<db>.sessions`` next to it.
        corpus: The JSONL corpus (``SANDBOX_RAG_CORPUS``; else the image's demo
            corpus if present; else None: the default collection stays empty).
        model: The embedding model's directory (``SANDBOX_RAG_MODEL``; else the
            image's if present; else None: BM25 only).
        score_budget: Rows a query may score before its commonest words stop
            choosing candidates (``SANDBOX_RAG_SCORE_BUDGET``).
        session_max_bytes: Title and text bytes one session's collection may
            hold (``SANDBOX_RAG_SESSION_MAX_BYTES``).
        index_max_documents: Documents per ``rag.index`` call
            (``SANDBOX_RAG_INDEX_MAX_DOCUMENTS``, at most 100,000).
        response_max_chars: Title and text characters per search reply
            (``SANDBOX_RAG_RESPONSE_MAX_CHARS``).
    """

    db: str
    corpus: str | None
    model: str | None = None
    score_budget: int = SCORED_ROWS_BUDGET
    session_max_bytes: int = DEFAULT_SESSION_MAX_BYTES
    index_max_documents: int = MAX_DOCUMENTS_PER_CALL
    response_max_chars: int = DEFAULT_RESPONSE_MAX_CHARS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RagSettings:
        """Read the settings from `environ`.

        Raises:
            ConfigError: A number setting is not a positive integer (or over its maximum).
        """
        corpus = environ.get("SANDBOX_RAG_CORPUS") or None
        if corpus is None and os.path.isfile(DEMO_CORPUS):
            corpus = DEMO_CORPUS
        model = environ.get("SANDBOX_RAG_MODEL") or None
        if model is None and os.path.isdir(IMAGE_MODEL):
            model = IMAGE_MODEL
        return cls(
            db=environ.get("SANDBOX_RAG_DB") or DEFAULT_DB,
            corpus=corpus,
            model=model,
            score_budget=_positive(environ, "SANDBOX_RAG_SCORE_BUDGET", SCORED_ROWS_BUDGET),
            session_max_bytes=_positive(
                environ, "SANDBOX_RAG_SESSION_MAX_BYTES", DEFAULT_SESSION_MAX_BYTES
            ),
            index_max_documents=_positive(
                environ,
                "SANDBOX_RAG_INDEX_MAX_DOCUMENTS",
                MAX_DOCUMENTS_PER_CALL,
                maximum=MAX_DOCUMENTS_PER_CALL,
            ),
            response_max_chars=_positive(
                environ, "SANDBOX_RAG_RESPONSE_MAX_CHARS", DEFAULT_RESPONSE_MAX_CHARS
            ),
        )


def _positive(
    environ: Mapping[str, str], name: str, default: int, *, maximum: int | None = None
) -> int:
    """The positive integer setting `name` of `environ`, or `default` when unset."""
    raw = environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = 0
    if value < 1 or (maximum is not None and value > maximum):
        upper = f" of at most {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be a positive integer{upper}, not {raw!r}")
    return value
