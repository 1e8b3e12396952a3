"""The retrieval index behind the ``rag`` toolset, in four parts.

- `query`: natural-language queries to bounded FTS5 MATCH expressions.
- `store`: the SQLite file (FTS5, BM25), its connection pool and writer lock.
- `corpus`: reading the JSONL corpus and telling whether it changed.
- `builder`: building the shared ``default`` collection in the background.

Standard library only: the agent runs on the image's Debian python3.
"""
