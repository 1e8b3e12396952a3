"""The ``rag`` toolset's tools: the ``rag`` resource type's, and the service's own.

One service serves every rag session of a server, so each call carries the
session it is for as parameter ``session``, which the server supplies (callers
cannot). The internal tools are how the server opens, closes, lists and waits
for those sessions.
"""

from __future__ import annotations

from ..rag.corpus import MAX_ID_CHARS, MAX_TEXT_CHARS
from .spec import Param, Shape, ToolDeclaration

DEFAULT_TOP_K = 5
MAX_TOP_K = 100
MAX_QUERY_CHARS = 2000
MAX_BATCH_QUERIES = 256
MAX_DOCUMENTS_PER_CALL = 100_000
MAX_TITLE_CHARS = 10_000
COLLECTIONS = ("all", "default", "session")
MODES = ("bm25", "dense", "hybrid")
DEFAULT_MODE = "bm25"

_SESSION = Param("session", "string", "The rag session the call is for.", internal=True)
_COLLECTION = Param(
    "collection",
    "string",
    "'all': the shared default collection and this session's, each ranked by its own "
    "index and interleaved by reciprocal rank, this session's first on a tie (scores "
    "of the two are not comparable); "
    "'default': the shared one only; 'session': this session's only.",
    default="all",
    enum=COLLECTIONS,
)
_MODE = Param(
    "mode",
    "string",
    "'bm25': ranked full-text search (words must match); 'dense': nearest passages "
    "by meaning (static word embeddings; finds some paraphrases); 'hybrid': both "
    "rankings fused by reciprocal rank. "
    f"Default '{DEFAULT_MODE}' (measured best: docs/benchmarks.md, rag: relevance); "
    "the reply's 'mode' says which ran.",
    enum=MODES,
)
_TOP_K = Param(
    "top_k",
    "integer",
    "How many passages to return.",
    default=DEFAULT_TOP_K,
    minimum=1,
    maximum=MAX_TOP_K,
)
_MAX_CHARS = Param(
    "max_chars",
    "integer",
    "Cut each passage's text to this many characters; a cut hit has "
    "'truncated': true. A reply's titles and texts together are bounded anyway "
    "(the service's response_max_chars).",
    minimum=1,
    maximum=MAX_TEXT_CHARS,
)
DOCUMENT = Shape(
    "Document",
    "One passage to index.",
    (
        Param("id", "string", required=True, min_length=1, max_length=MAX_ID_CHARS),
        Param("title", "string", default="", max_length=MAX_TITLE_CHARS),
        Param("text", "string", required=True, min_length=1, max_length=MAX_TEXT_CHARS),
    ),
)

TOOLS = (
    ToolDeclaration(
        "rag",
        "search",
        "Search; returns results [{id, title, text, score, collection, truncated}] "
        "best first, a 'context' string joining them and the 'mode' that ranked them.",
        (
            Param(
                "query",
                "string",
                "Natural-language query.",
                required=True,
                min_length=1,
                max_length=MAX_QUERY_CHARS,
            ),
            _TOP_K,
            _MODE,
            _COLLECTION,
            _MAX_CHARS,
            _SESSION,
        ),
    ),
    ToolDeclaration(
        "rag",
        "batch_search",
        "Run several searches; returns one result list per query, in order, and an "
        "'errors' list with a message for each query that failed.",
        (
            Param(
                "queries",
                "array",
                "Queries, in order.",
                required=True,
                min_length=1,
                max_length=MAX_BATCH_QUERIES,
                items=Param("query", "string"),
                # A query that cannot be searched fails alone, with an error naming it.
                per_item=True,
            ),
            _TOP_K,
            _MODE,
            _COLLECTION,
            _MAX_CHARS,
            _SESSION,
        ),
    ),
    ToolDeclaration(
        "rag",
        "index",
        "Add passages {id, title?, text} to this session's private collection.",
        (
            Param(
                "documents",
                "array",
                "Passages for this session's private collection; an id indexed "
                "again replaces the earlier passage. The service bounds the documents per "
                "call and the bytes a collection holds (rag.index_max_documents, "
                "rag.session_max_bytes).",
                required=True,
                min_length=1,
                max_length=MAX_DOCUMENTS_PER_CALL,
                items=Param("document", "object", shape=DOCUMENT),
            ),
            _SESSION,
        ),
    ),
    ToolDeclaration(
        "rag",
        "stats",
        "Document counts, index size, query count and search latency.",
        (_SESSION,),
    ),
    ToolDeclaration(
        "rag",
        "status",
        "State and progress of the shared default collection's build.",
        internal=True,
    ),
    ToolDeclaration(
        "rag",
        "open_session",
        "Record a session for a worker (idempotent).",
        (_SESSION, Param("worker", "string", "Who owns the session (tenant/worker).")),
        internal=True,
    ),
    ToolDeclaration(
        "rag", "close_session", "Delete a session and its passages.", (_SESSION,), internal=True
    ),
    ToolDeclaration("rag", "sessions", "Every recorded session, oldest first.", internal=True),
)
"""Every tool of the rag service; the public ones in the order ``GET /tools`` lists them."""
