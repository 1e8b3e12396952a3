"""Metrics by OSWorld's names: each compares a getter's result with what was
expected and scores it from 0 to 1.

A metric takes the ``result`` value, the ``expected`` value (None when the
evaluator has no ``expected``) and its ``options``. A malformed ``expected``
(rules of the wrong shape) raises `BadExpected`; the evaluation names the field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from .fields import Fields
from .registry import Registry

Metric = Callable[[Any, Any, Fields], float]
"""Scores a result against the expected value, with options."""

METRICS = Registry[Metric]("metric")
"""Every metric, by its ``func`` name."""


class BadExpected(ValueError):
    """The expected value does not fit the metric (say, rules without ``include``)."""


def _rules(expected: Any, *keys: str) -> Mapping[str, Any]:
    if not isinstance(expected, Mapping) or not any(key in expected for key in keys):
        raise BadExpected(f"must be rules naming {' or '.join(keys)}")
    return expected


def _score(ok: bool) -> float:
    return 1.0 if ok else 0.0


@METRICS.register("exact_match")
def exact_match(result: Any, expected: Any, options: Fields) -> float:
    """1 when the result equals ``expected`` (a rules' ``expected``, or the value)."""
    del options
    wanted = expected["expected"] if isinstance(expected, Mapping) else expected
    if wanted is None:
        raise BadExpected("must be a value or rules naming expected")
    return _score(result == wanted)


@METRICS.register("check_include_exclude")
def check_include_exclude(result: Any, expected: Any, options: Fields) -> float:
    """1 when the result holds every ``include`` string and no ``exclude`` one."""
    del options
    rules = _rules(expected, "include", "exclude")
    text = str(result)
    include, exclude = rules.get("include", []), rules.get("exclude", [])
    if not isinstance(include, list) or not isinstance(exclude, list):
        raise BadExpected("include and exclude must be lists of strings")
    return _score(
        all(str(item) in text for item in include)
        and all(str(item) not in text for item in exclude)
    )


@METRICS.register("match", "regex_match")
def match(result: Any, expected: Any, options: Fields) -> float:
    """1 when the regular expression (``expected``, or rules' ``pattern``) is found in
    the result; ``options.full`` asks that it match the whole result."""
    pattern = expected["pattern"] if isinstance(expected, Mapping) else expected
    if not isinstance(pattern, str):
        raise BadExpected("must be a pattern or rules naming pattern")
    try:
        compiled = re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise BadExpected(f"is not a valid regular expression: {exc}") from None
    find = compiled.fullmatch if options.boolean("full", False) else compiled.search
    return _score(find(str(result)) is not None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@METRICS.register("compare_numbers")
def compare_numbers(result: Any, expected: Any, options: Fields) -> float:
    """1 when the result, read as a number, is within ``options.tolerance`` (absolute)
    or ``options.rel_tolerance`` (relative) of ``expected``."""
    wanted = _number(expected["expected"] if isinstance(expected, Mapping) else expected)
    if wanted is None:
        raise BadExpected("must be a number or rules naming expected")
    got = _number(result)
    if got is None:
        return 0.0
    absolute = options.number("tolerance", 0.0)
    relative = options.number("rel_tolerance", 0.0)
    return _score(math.isclose(got, wanted, rel_tol=relative, abs_tol=absolute))


def _text(value: Any, options: Fields) -> str:
    text = str(value).replace("\r\n", "\n")
    if options.boolean("ignore_case", False):
        text = text.lower()
    if options.boolean("ignore_blanks", False):
        text = " ".join(text.split())
    return text


@METRICS.register("compare_text_file")
def compare_text_file(result: Any, expected: Any, options: Fields) -> float:
    """1 when the two texts are equal (``ignore_case``, ``ignore_blanks`` as options);
    a difference only in the final newline does not count."""
    if expected is None:
        raise BadExpected("is required: the text to compare with")
    return _score(_text(result, options).rstrip("\n") == _text(expected, options).rstrip("\n"))


def _rows(text: Any, options: Fields) -> list[list[str]]:
    rows = csv.reader(io.StringIO(_text(text, options).strip("\n")))
    return [[cell.strip() for cell in row] for row in rows if row]


@METRICS.register("compare_csv")
def compare_csv(result: Any, expected: Any, options: Fields) -> float:
    """1 when the two CSV texts hold the same rows (cells compared trimmed)."""
    if expected is None:
        raise BadExpected("is required: the CSV to compare with")
    try:
        return _score(_rows(result, options) == _rows(expected, options))
    except csv.Error:
        return 0.0


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "re": lambda value, ref: re.search(str(ref), str(value)) is not None,
}
_MISSING = object()


def _lookup(document: Any, key: Any) -> Any:
    for part in key if isinstance(key, list) else [key]:
        try:
            document = document[part]
        except (KeyError, IndexError, TypeError):  # no such key, index or container
            return _MISSING
    return document


def _holds(document: Any, rule: Any) -> bool:
    if not isinstance(rule, Mapping) or "key" not in rule:
        raise BadExpected("each rule must be an object with key, method and ref")
    compare = _COMPARISONS.get(rule.get("method", "eq"))
    if compare is None:
        raise BadExpected(f"method must be one of {', '.join(_COMPARISONS)}")
    value = _lookup(document, rule["key"])
    if value is _MISSING:
        return False
    try:
        return bool(compare(value, rule.get("ref")))
    except TypeError:  # comparing a string with a number: not what was expected
        return False


@METRICS.register("check_json")
def check_json(result: Any, expected: Any, options: Fields) -> float:
    """1 when the result's JSON meets the rules (``expect`` and ``unexpect``: lists of
    {key: path, method: eq|ne|lt|le|gt|ge|re, ref}), or equals ``expected``'s JSON."""
    del options
    try:
        document = json.loads(result) if isinstance(result, str) else result
    except ValueError:
        return 0.0
    if isinstance(expected, Mapping) and ("expect" in expected or "unexpect" in expected):
        expect, unexpect = expected.get("expect", []), expected.get("unexpect", [])
        if not isinstance(expect, list) or not isinstance(unexpect, list):
            raise BadExpected("expect and unexpect must be lists of rules")
        return _score(
            all(_holds(document, rule) for rule in expect)
            and not any(_holds(document, rule) for rule in unexpect)
        )
    if isinstance(expected, str):
        try:
            expected = json.loads(expected)
        except ValueError:
            raise BadExpected("is not JSON") from None
    if expected is None:
        raise BadExpected("is required: rules or the JSON to compare with")
    return _score(document == expected)
