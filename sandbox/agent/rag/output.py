"""Bounding what a search replies: texts cut to ``max_chars``, a budget per reply."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .store import DEFAULT_CID, Hit


class ReplyBudget:
    """Cuts the hits of one reply: each text to `max_chars`, all titles and texts
    together to `total` characters (hits past it keep only what is left)."""

    def __init__(self, total: int, max_chars: int | None) -> None:
        self._left = total
        self._max_chars = max_chars

    def results(self, hits: Sequence[Hit]) -> list[dict[str, Any]]:
        """`hits` as result objects, cut where the budget says."""
        return [self._result(hit) for hit in hits]

    def _result(self, hit: Hit) -> dict[str, Any]:
        title = hit.title[: self._left]
        self._left -= len(title)
        limit = self._left if self._max_chars is None else min(self._max_chars, self._left)
        text = hit.text[:limit]
        self._left -= len(text)
        return {
            "id": hit.doc_id,
            "title": title,
            "text": text,
            "score": round(hit.score, 6),
            "collection": "default" if hit.cid == DEFAULT_CID else "session",
            "truncated": len(title) < len(hit.title) or len(text) < len(hit.text),
        }


def context_text(results: Sequence[Mapping[str, Any]]) -> str:
    """The results as one block of text to put in an LLM prompt, numbered for citing.

    Made of the (cut) results, so bounded as they are.
    """
    blocks = []
    for number, result in enumerate(results, start=1):
        head = f"[{number}] {result['title']}" if result["title"] else f"[{number}]"
        blocks.append(f"{head}\n{result['text']}")
    return "\n\n".join(blocks)
