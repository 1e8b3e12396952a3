"""The retrieval index behind the ``rag`` toolset.

- `query`: natural-language queries to bounded FTS5 MATCH expressions.
- `store`: one SQLite file (FTS5, BM25), its connection pool and writer lock.
- `corpus`: reading the JSONL corpus and telling whether it changed.
- `builder`: building the shared ``default`` collection in the background.
- `sessions`: each session's private collection in a file of its own, its
  byte bound, and merging its hits with the shared ones.
- `embedder`: the embedding model (static token vectors) behind dense search.
- `vectors`: each passage's vector, stored beside it, searched as one matrix.
- `fusion`: reciprocal rank fusion (hybrid mode; default and session lists).
- `params` and `output`: checking the tools' parameters, bounding their replies.

Standard library only, but for `embedder` and `vectors`, which import numpy
(Debian's python3-numpy) and tokenizers (a wheel unpacked into the rag image)
only when a model is loaded: the agent runs on the image's Debian python3.
"""
