"""`rag` sessions: ranked full-text and dense search in one shared index service.

Every rag session of a server lives in the same service container (SQLite FTS5,
BM25; static-embedding vectors for ``mode`` dense and hybrid). The shared
`default` collection is built once from the operator's JSONL corpus; each
session also gets a private collection, filled with `rag:index`, invisible to
other workers and removed when the session ends. The index sits on
a Docker volume, so it survives restarts of the container.

Each private collection is a SQLite file of its own in the service: a session's
passages never change the scores of anyone else's results, and its indexing
never holds up another session's search. What one session may index, and how
much text one reply may carry, are the service's settings (`service_setup`).
The tools are the ``rag`` toolset's declarations (`sandbox/agent/tools/rag.py`).
"""

from __future__ import annotations

from ..config import ResourceLimits, Settings
from .base import ResourceType

CORPUS_DIR = "/corpus"
DATA_DIR = "/data"


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


RAG = RagResourceType(
    name="rag",
    image="rag",
    description="BM25, dense and hybrid search over a shared corpus plus a private collection.",
    toolsets=("rag",),
    shared=True,
)
