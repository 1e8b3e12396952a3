"""Query planning: natural language to a bounded FTS5 MATCH expression.

Users write natural language, never FTS5 syntax: `match_expression` keeps only
words (unicode61 rules), drops common English stopwords, quotes each word and
ORs them, so no input can be an FTS5 syntax error. The porter stemmer (see
`store.TOKENIZER`) makes "indexes", "indexing" and "indexed" meet.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

MAX_QUERY_TERMS = 64
# The most rows a query's candidate words may match (see `plan_query`): scoring
# costs about 0.8 µs a row. Measured over 100,000 man-page passages with 3 to 7
# word queries: 3,000 keeps a search near 3 ms instead of 13 ms for ranking
# every match, and puts the right passage first about 7% less often.
SCORED_ROWS_BUDGET = 3000

# Words so common that they only add noise (and work) to a BM25 OR query.
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# unicode61 token characters are letters, digits and private-use characters;
# combining marks stay with the word they decorate.
_WORD = re.compile(r"[^\W_](?:[^\W_]|[\u0300-\u036f])*")


def query_terms(query: str) -> list[str]:
    """The distinct words of `query` worth searching for, in order of appearance.

    Stopwords and one-letter words are dropped unless nothing else is left, so a
    query such as "The Who" still finds something.
    """
    words: list[str] = []
    seen: set[str] = set()
    for match in _WORD.finditer(query):
        word = match.group().lower()
        if word not in seen:
            seen.add(word)
            words.append(word)
    useful = [w for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return (useful or words)[:MAX_QUERY_TERMS]


def match_expression(terms: Sequence[str]) -> str:
    """An FTS5 MATCH string ORing the quoted `terms` (each free of double quotes)."""
    return " OR ".join(f'"{term}"' for term in terms)


@dataclass(frozen=True)
class QueryPlan:
    """The MATCH expression to rank, and the exact one to fall back on."""

    expression: str
    fallback: str | None = None


def plan_query(
    terms: Sequence[str], frequencies: Sequence[int], budget: int = SCORED_ROWS_BUDGET
) -> QueryPlan:
    """Bound the rows BM25 must score, keeping every word in the score.

    FTS5 scores every row an OR query matches (about 1 µs each), so a query with
    a common word ("file", "use") over 100,000 passages would score most of
    them. The candidates are therefore the rows holding one of the rarest words,
    as many as fit in `budget` rows together, while every word still counts in
    their score: ``(rare) AND (all words)``. The rare words then appear twice in
    the expression and so weigh double, which only strengthens what BM25's IDF
    already says. When even the rarest word is over the budget, the candidates
    are the rows holding both of the two rarest words.

    Args:
        terms: The query's words.
        frequencies: How many rows hold each word (may be stale).
        budget: The most rows the candidate words may match together.
    """
    everything = match_expression(terms)
    order = sorted(range(len(terms)), key=lambda n: frequencies[n])
    rare: list[str] = []
    rows = 0
    for n in order:
        if rows + frequencies[n] > budget:
            break
        rare.append(terms[n])
        rows += frequencies[n]
    if len(rare) == len(terms):
        return QueryPlan(everything)
    if rare:
        candidates = match_expression(rare)
    elif len(terms) >= 2:
        candidates = f'"{terms[order[0]]}" AND "{terms[order[1]]}"'
    else:
        return QueryPlan(everything)
    return QueryPlan(f"({candidates}) AND ({everything})", everything)


class TermFrequencies:
    """How many rows hold each query word, remembered for a while.

    Counting a word's rows reads its whole posting list, as long as scoring
    them would; remembered, it is free. The counts only steer `plan_query`: a
    count too low makes a query slower, never wrong, and one too high (after
    passages were deleted, when `clear` is called) could drop candidates, so
    counts also expire after `ttl_s`.
    """

    def __init__(self, ttl_s: float = 60.0, limit: int = 100_000) -> None:
        self._ttl_s = ttl_s
        self._limit = limit
        self._counts: dict[str, tuple[int, float]] = {}

    def get(self, conn: sqlite3.Connection, term: str) -> int:
        """The number of rows holding `term` (a word without double quotes)."""
        now = time.monotonic()
        cached = self._counts.get(term)
        if cached is not None and now - cached[1] < self._ttl_s:
            return cached[0]
        count = int(
            conn.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (f'"{term}"',)).fetchone()[0]
        )
        if len(self._counts) >= self._limit:
            self._counts.clear()
        self._counts[term] = (count, now)
        return count

    def clear(self) -> None:
        """Forget every count (after deletions)."""
        self._counts.clear()
