"""The rag index's pure parts: query words, query plans, corpus files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sandbox.agent.rag.corpus import SkippedLines, hash_and_count_lines, read_corpus
from sandbox.agent.rag.query import MAX_QUERY_TERMS, plan_query, query_terms


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("How do I list the files in a directory?", ["list", "files", "directory"]),
        ('"AND OR NOT * ( ) ^ :', ["and", "or", "not"]),
        ("The Who", ["the", "who"]),
        ("title:lamp NEAR(a b)", ["title", "lamp", "near"]),
        ("snake_case and CamelCase", ["snake", "case", "camelcase"]),
        ("naïve café, Zürich 2024", ["naïve", "café", "zürich", "2024"]),
        ("lamp Lamp LAMP", ["lamp"]),
        ("x y 7", ["7"]),
        ("?!* ( ) ^", []),
    ],
)
def test_query_terms_are_words_without_syntax(query: str, terms: list[str]) -> None:
    assert query_terms(query) == terms


def test_query_terms_are_bounded() -> None:
    query = " ".join(f"word{n}" for n in range(200))

    assert query_terms(query) == [f"word{n}" for n in range(MAX_QUERY_TERMS)]


def test_a_plan_within_budget_ors_every_word() -> None:
    plan = plan_query(["lamp", "terns"], [10, 20], budget=100)

    assert plan.expression == '"lamp" OR "terns"'
    assert plan.fallback is None


def test_common_words_score_but_do_not_choose_candidates() -> None:
    plan = plan_query(["file", "okapi", "list", "zebra"], [900, 3, 800, 40], budget=100)

    everything = '"file" OR "okapi" OR "list" OR "zebra"'
    assert plan.expression == f'("okapi" OR "zebra") AND ({everything})'
    assert plan.fallback == everything


def test_only_common_words_need_both_of_the_rarest() -> None:
    plan = plan_query(["file", "list", "use"], [900, 800, 5000], budget=100)

    everything = '"file" OR "list" OR "use"'
    assert plan.expression == f'("list" AND "file") AND ({everything})'
    assert plan.fallback == everything


def test_a_single_common_word_is_searched_as_it_is() -> None:
    assert plan_query(["file"], [900], budget=100).expression == '"file"'


def test_lines_are_counted_and_hashed(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"a\nb\n\nc")

    assert hash_and_count_lines(str(path)) == (hashlib.sha256(b"a\nb\n\nc").hexdigest(), 4)


def test_corpus_lines_are_read_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "one"}\n'
        b"\n"
        b'{"id": "b", "title": null, "text": "two"}\n'
        b'{"id": "c", "text": "\\ud800"}\n'
        b"\xff\n"
    )
    skipped = SkippedLines()

    read = [(n, d.doc_id if d else None) for n, d in read_corpus(str(path), skipped)]

    assert read == [(1, "a"), (3, "b"), (4, None), (5, None)]
    assert skipped.as_dict() == {
        "count": 2,
        "first_line": 4,
        "reason": "contains an unpaired surrogate",
    }
