"""Checking the parameters of the ``rag`` tools: each refusal names its field (1002).

Types, counts and lengths are the declaration's (`sandbox/agent/tools/rag.py`),
checked before a tool runs; what is left here needs the words of a query, the
bytes of a text or the service's own limits.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParams
from ..params import Params
from ..tools.rag import MAX_QUERY_CHARS
from .corpus import Document
from .query import query_terms

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


def index_documents(value: list[dict[str, Any]], limit: int) -> tuple[list[Document], list[int]]:
    """The documents of a ``rag.index`` call and their UTF-8 bytes.

    `value` holds documents the declaration accepted (an id, a text, a title, each
    of its lengths); a text of only spaces and an unpaired surrogate are refused
    here. A repeated id keeps its last text. At most `limit` documents are allowed
    (the service's setting, at most the declaration's bound).
    """
    if len(value) > limit:
        raise InvalidParams(
            f"documents holds {len(value)} documents; at most {limit} are allowed per call",
            field="documents",
        )
    documents: dict[str, tuple[Document, int]] = {}
    for number, item in enumerate(value):
        where = f"documents.{number}"
        doc_id, title, text = item["id"], item["title"], item["text"]
        if not text.strip():
            raise InvalidParams(f"{where}.text must not be blank", field=f"{where}.text")
        _utf8_size(doc_id, f"{where}.id")  # refuses what SQLite could not store
        size = _utf8_size(title, f"{where}.title") + _utf8_size(text, f"{where}.text")
        documents.pop(doc_id, None)  # the last copy wins, in its own position
        documents[doc_id] = (Document(doc_id, title, text), size)
    return [doc for doc, _ in documents.values()], [size for _, size in documents.values()]


def _utf8_size(value: str, name: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidParams(f"{name} contains an unpaired surrogate", field=name) from None
