"""`rag` sessions: ranked full-text search in one shared index service.

Every rag session of a server lives in the same service container (SQLite FTS5,
BM25). The shared `default` collection is built once from the operator's JSONL
corpus; each session also gets a private collection, filled with `rag:index`,
invisible to other workers and removed when the session ends. The index sits on
a Docker volume, so it survives restarts of the container.

Each private collection is a SQLite file of its own in the service: a session's
passages never change the scores of anyone else's results, and its indexing
never holds up another session's search. What one session may index, and how
much text one reply may carry, are the service's settings (`service_setup`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import ResourceLimits, Settings
from .base import ResourceType, ToolParams, ToolSpec

MAX_TOP_K = 100
MAX_QUERIES = 256
MAX_HIT_CHARS = 1_000_000
MAX_DOCUMENTS = 100_000
CORPUS_DIR = "/corpus"
DATA_DIR = "/data"

Collection = Literal["all", "default", "session"]
_COLLECTION_HELP = (
    "'all': the shared default collection and this session's, each ranked by its own "
    "index and interleaved by reciprocal rank, this session's first on a tie (scores "
    "of the two are not comparable); "
    "'default': the shared one only; 'session': this session's only."
)
_TOP_K = Field(default=5, ge=1, le=MAX_TOP_K, description="How many passages to return.")
_MAX_CHARS = Field(
    default=None,
    ge=1,
    le=MAX_HIT_CHARS,
    description="Cut each passage's text to this many characters; a cut hit has "
    "'truncated': true. A reply's titles and texts together are bounded anyway "
    "(the service's response_max_chars).",
)


class SearchParams(ToolParams):
    query: str = Field(min_length=1, max_length=2000, description="Natural-language query.")
    top_k: int = _TOP_K
    collection: Collection = Field(default="all", description=_COLLECTION_HELP)
    max_chars: int | None = _MAX_CHARS


class BatchSearchParams(ToolParams):
    queries: list[str] = Field(
        min_length=1, max_length=MAX_QUERIES, description="Queries, in order."
    )
    top_k: int = _TOP_K
    collection: Collection = Field(default="all", description=_COLLECTION_HELP)
    max_chars: int | None = _MAX_CHARS


class Document(BaseModel):
    """One passage to index."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    title: str = Field(default="", max_length=10_000)
    text: str = Field(min_length=1, max_length=1_000_000)


class IndexParams(ToolParams):
    documents: list[Document] = Field(
        min_length=1,
        max_length=MAX_DOCUMENTS,
        description="Passages for this session's private collection; an id indexed "
        "again replaces the earlier passage. The service bounds the documents per "
        "call and the bytes a collection holds (rag.index_max_documents, "
        "rag.session_max_bytes).",
    )


class StatsParams(ToolParams):
    pass


class RagResourceType(ResourceType):
    """The rag resource type: its service mounts the index volume and the corpus."""

    def service_setup(self, settings: Settings) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """The index volume at /data and, when configured, the corpus read-only."""
        rag = settings.rag
        environment = {
            "SANDBOX_RAG_DB": f"{DATA_DIR}/index.sqlite3",
            "SANDBOX_RAG_SESSION_MAX_BYTES": str(rag.session_max_bytes),
            "SANDBOX_RAG_INDEX_MAX_DOCUMENTS": str(rag.index_max_documents),
            "SANDBOX_RAG_RESPONSE_MAX_CHARS": str(rag.response_max_chars),
        }
        volumes = {settings.rag.volume: {"bind": DATA_DIR, "mode": "rw"}}
        corpus = settings.rag.corpus
        if corpus is not None:
            inside = f"{CORPUS_DIR}/{corpus.name}"
            volumes[str(corpus)] = {"bind": inside, "mode": "ro"}
            environment["SANDBOX_RAG_CORPUS"] = inside
        return environment, volumes

    def service_limits(self, settings: Settings) -> ResourceLimits:
        """The rag settings' own limits: one container serves every session."""
        return settings.rag.limits


def _tool(name: str, params: type[ToolParams], description: str) -> ToolSpec:
    return ToolSpec("rag", name, params, description, agent_tool=f"rag.{name}")


RAG = RagResourceType(
    name="rag",
    image="rag",
    description="Ranked full-text search over a shared corpus plus a private collection.",
    toolsets=("rag",),
    shared=True,
    tools=(
        _tool(
            "search",
            SearchParams,
            "Search; returns results [{id, title, text, score, collection, truncated}] "
            "best first and a 'context' string joining them.",
        ),
        _tool(
            "batch_search",
            BatchSearchParams,
            "Run several searches; returns one result list per query, in order, and an "
            "'errors' list with a message for each query that failed.",
        ),
        _tool(
            "index",
            IndexParams,
            "Add passages {id, title?, text} to this session's private collection.",
        ),
        _tool(
            "stats",
            StatsParams,
            "Document counts, index size, query count and search latency.",
        ),
    ),
)
