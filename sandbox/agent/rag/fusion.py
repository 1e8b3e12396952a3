"""Reciprocal rank fusion: one ranking out of several, by rank alone.

Scores of different rankers (BM25 of two indexes; BM25 and cosine) do not
compare, ranks do: a passage counts 1 / (`RRF_K` + rank) in each list that
holds it (rank from 1), and the sums order the result (Cormack, Clarke and
Büttcher, 2009; ``k`` = 60 as there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .store import Hit

RRF_K = 60
# How deep each ranker's list goes before a hybrid fusion: a passage ranked
# 30th by one ranker and 3rd by the other should still be found.
HYBRID_DEPTH = 50


def hybrid(lexical: Sequence[Hit], dense: Sequence[Hit], top_k: int) -> list[Hit]:
    """The best `top_k` of one collection's BM25 and dense rankings, fused.

    A passage found by both counts both ranks; its score becomes its fused
    score (BM25 and cosine scores do not add up). On a tie BM25's order wins.
    """
    fused: dict[tuple[int, str], tuple[float, int, Hit]] = {}
    for ranking in (lexical, dense):
        for rank, hit in enumerate(ranking, start=1):
            key = (hit.cid, hit.doc_id)
            score, first, kept = fused.get(key, (0.0, len(fused), hit))
            fused[key] = (score + 1.0 / (RRF_K + rank), first, kept)
    ordered = sorted(fused.values(), key=lambda item: (-item[0], item[1]))
    return [replace(hit, score=score) for score, _, hit in ordered[:top_k]]


def merge_by_rank(lists: Sequence[Sequence[Hit]], top_k: int) -> list[Hit]:
    """The best `top_k` of hits ranked by separate indexes, by reciprocal rank fusion.

    BM25 scores from separate indexes do not compare: a word's weight depends on
    how many passages of its own index hold it, and in a collection of a few
    passages every word is common, so its scores are near zero. The lists are
    therefore merged by rank, each hit counting 1 / (RRF_K + rank) (rank from 1),
    which interleaves them; a tie keeps the earlier list's hit first. Each hit
    keeps its own index's score.
    """
    if len(lists) == 1:
        return list(lists[0][:top_k])
    fused = [
        (1.0 / (RRF_K + rank), -order, hit)
        for order, hits in enumerate(lists)
        for rank, hit in enumerate(hits, start=1)
    ]
    fused.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [hit for _, _, hit in fused[:top_k]]
