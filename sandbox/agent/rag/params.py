"""Checking the parameters of the ``rag`` tools: each refusal names its field (1002)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParams
from ..params import Params
from .corpus import MAX_ID_CHARS, MAX_TEXT_CHARS, Document
from .query import query_terms

DEFAULT_TOP_K = 5
MAX_TOP_K = 100
MAX_QUERY_CHARS = 2000
MAX_BATCH_QUERIES = 256
MAX_DOCUMENTS_PER_CALL = 100_000
MAX_TITLE_CHARS = 10_000
MAX_SESSION_CHARS = 256


def search_terms(query: Any, name: str) -> list[str]:
    """The words of query `query` (parameter `name`), refusing what has none."""
    if not isinstance(query, str):
        raise InvalidParams(f"{name} must be a string", field=name)
    if not query.strip():
        raise InvalidParams(f"{name} must not be empty", field=name)
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidParams(
            f"{name} is {len(query)} characters long; at most {MAX_QUERY_CHARS} are allowed",
            field=name,
        )
    terms = query_terms(query)
    if not terms:
        raise InvalidParams(f"{name} has no words to search for", field=name)
    return terms


def read_top_k(params: Params) -> int:
    """``top_k``: 1 to `MAX_TOP_K`, `DEFAULT_TOP_K` when absent."""
    value = params.raw().get("top_k")
    if value is None:
        return DEFAULT_TOP_K
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidParams(f"top_k must be an integer from 1 to {MAX_TOP_K}", field="top_k")
    return value


def required_session(params: Params) -> str:
    """``session``, which the call needs."""
    session = optional_session(params)
    if session is None:
        raise InvalidParams("session is required", field="session")
    return session


def optional_session(params: Params) -> str | None:
    """``session`` if given (non-empty, at most `MAX_SESSION_CHARS`)."""
    session = params.optional_string("session")
    if session is None:
        return None
    if not session.strip():
        raise InvalidParams("session must not be empty", field="session")
    check_text(session, "session", MAX_SESSION_CHARS)
    return session


def check_text(value: str, name: str, limit: int) -> int:
    """Refuse `value` if over `limit` characters or not UTF-8-encodable; its UTF-8 bytes."""
    if len(value) > limit:
        raise InvalidParams(f"{name} is over {limit} characters", field=name)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidParams(f"{name} contains an unpaired surrogate", field=name) from None


def no_session(session: str) -> InvalidParams:
    """The error for a session that is not open."""
    return InvalidParams(
        f"no open rag session {session!r} (rag.open_session opens one)", field="session"
    )


def read_max_chars(params: Params) -> int | None:
    """``max_chars``: the longest hit text wanted (1 to `MAX_TEXT_CHARS`), or None."""
    value = params.raw().get("max_chars")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TEXT_CHARS:
        raise InvalidParams(
            f"max_chars must be an integer from 1 to {MAX_TEXT_CHARS}", field="max_chars"
        )
    return value


def index_documents(value: Any, limit: int) -> tuple[list[Document], list[int]]:
    """The validated documents of a ``rag.index`` call and their UTF-8 bytes.

    A repeated id keeps its last text. At most `limit` documents are allowed.
    """
    if not isinstance(value, list):
        raise InvalidParams("documents must be a list of objects", field="documents")
    if len(value) > limit:
        raise InvalidParams(
            f"documents holds {len(value)} documents; at most {limit} are allowed per call",
            field="documents",
        )
    documents: dict[str, tuple[Document, int]] = {}
    for number, item in enumerate(value):
        where = f"documents.{number}"
        if not isinstance(item, dict):
            raise InvalidParams(f"{where} must be an object", field=where)
        doc_id = item.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidParams(f"{where}.id must be a non-empty string", field=f"{where}.id")
        check_text(doc_id, f"{where}.id", MAX_ID_CHARS)
        title = item.get("title")
        size = 0
        if title is None:
            title = ""
        elif not isinstance(title, str):
            raise InvalidParams(f"{where}.title must be a string", field=f"{where}.title")
        else:
            size += check_text(title, f"{where}.title", MAX_TITLE_CHARS)
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidParams(f"{where}.text must be a non-empty string", field=f"{where}.text")
        size += check_text(text, f"{where}.text", MAX_TEXT_CHARS)
        documents.pop(doc_id, None)  # the last copy wins, in its own position
        documents[doc_id] = (Document(doc_id, title, text), size)
    return [doc for doc, _ in documents.values()], [size for _, size in documents.values()]
