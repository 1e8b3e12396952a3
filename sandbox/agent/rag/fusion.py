"""Reciprocal rank fusion: one ranking out of several, by rank alone.

Scores of different rankers (BM25 of two indexes; BM25 and cosine) do not
compare, ranks do: a passage counts 1 / (`RRF_K` + rank) in each list that
holds it (rank from 1), and the sums order the result (Cormack, Clarke and
Büttcher, 2009; ``k`` = 60 as there).
"""

from __future__ import annotations

from collections.abc import Sequence

from .store import Hit

RRF_K = 60
# How deep each ranker's list goes before a hybrid fusion: a passage ranked
# 30th by one ranker and 3rd by the other should still be found.
HYBRID_DEPTH = 50


def hybrid(
    lexical: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]], top_k: int
) -> list[tuple[int, float]]:
    """The best `top_k` (rowid, fused score) of one collection's BM25 and dense
    rankings, each a list of (rowid, score) best first.

    A passage found by both counts both ranks; its score is its fused score
    (BM25 and cosine scores do not add up). On a tie, the passage seen first
    (BM25's list before the dense one) comes first.
    """
    fused: dict[int, float] = {}
    for ranking in (lexical, dense):
        for rank, (rowid, _) in enumerate(ranking, start=1):
            fused[rowid] = fused.get(rowid, 0.0) + 1.0 / (RRF_K + rank)
    # dicts keep insertion order and sorted() is stable: ties stay in first-seen order.
    return sorted(fused.items(), key=lambda item: -item[1])[:top_k]


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
