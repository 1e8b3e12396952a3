"""The retrieval index behind the ``rag`` toolset.

- `query`: natural-language queries to bounded FTS5 MATCH expressions.
- `store`: one SQLite file (FTS5, BM25), its connection pool and writer lock.
- `corpus`: reading the JSONL corpus and telling whether it changed.
- `builder`: building the shared ``default`` collection in the background.
- `sessions`: each session's private collection in a file of its own, its
  byte bound, and merging its hits with the shared ones.
- `params` and `output`: checking the tools' parameters, bounding their replies.

Standard library only: the agent runs on the image's Debian python3.
"""
