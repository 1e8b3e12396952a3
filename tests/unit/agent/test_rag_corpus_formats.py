"""Corpus files in our format and in AgentFlow's (FlashRAG's ``contents``) load alike."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox.agent.rag.corpus import Document, SkippedLines, read_corpus


def _read(tmp_path: Path, *lines: object) -> tuple[list[Document | None], SkippedLines]:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    skipped = SkippedLines()
    return [document for _, document in read_corpus(str(path), skipped)], skipped


def test_flashrag_contents_give_the_title_from_their_first_line(tmp_path: Path) -> None:
    documents, skipped = _read(
        tmp_path,
        {"id": "0", "contents": '"Evan Morris"\nEvan L. Morris was a lobbyist.'},
        {"id": "1", "title": "Given", "contents": "First line\nsecond line"},
        {"contents": "one line, no id"},
    )
    assert documents == [
        Document("0", "Evan Morris", "Evan L. Morris was a lobbyist."),
        Document("1", "Given", "First line\nsecond line"),
        Document("3", "", "one line, no id"),  # numbered by its line
    ]
    assert skipped.count == 0


def test_our_own_format_still_needs_an_id(tmp_path: Path) -> None:
    documents, skipped = _read(tmp_path, {"id": 5, "title": "T", "text": "body"}, {"text": "x"})
    assert documents == [Document("5", "T", "body"), None]
    assert (skipped.count, skipped.first_line) == (1, 2)
    assert "id must be" in str(skipped.first_reason)


def test_empty_contents_are_skipped_with_a_reason(tmp_path: Path) -> None:
    documents, skipped = _read(tmp_path, {"id": "a", "contents": "  "}, {"id": "b", "contents": 7})
    assert documents == [None, None]
    assert skipped.count == 2
    assert "text must be a non-empty string" in str(skipped.first_reason)
