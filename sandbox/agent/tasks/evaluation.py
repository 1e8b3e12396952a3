"""An OSWorld-style evaluator: getters fetch values, metrics score them, `conj` joins.

The evaluator object::

    {"func": "compare_text_file" | [...],        # metric name(s)
     "result": {"type": "vm_file", ...} | [...], # one getter per metric
     "expected": {"type": "literal", ...} | [...],  # optional, one per metric
     "options": {...} | [...],                   # optional, one per metric
     "conj": "and" | "or",                       # how several scores join
     "postconfig": [steps]}                      # setup steps run first

``and`` scores 0 when any metric does, else their mean; ``or`` their best.
``{"func": "infeasible"}`` (OSWorld's convention) scores 1 when the agent gave
up with ``vm.fail``, else 0; on every other task ``vm.fail`` scores 0.
Everything is checked before anything runs, naming the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParams
from ..tools.desktop_tasks import MAX_SETUP_S
from .fields import Fields
from .getters import GETTERS, get
from .host import TaskHost
from .metrics import METRICS, BadExpected, Metric
from .steps import run_steps

INFEASIBLE = "infeasible"
"""The ``func`` of a task that cannot be done: 1 when the agent said so with
``vm.fail``, else 0. An agent that calls ``vm.fail`` on any other task scores 0."""
MAX_EVIDENCE_CHARS = 2000
"""Most characters of each getter's value the evidence shows."""


def evaluate(
    host: TaskHost, raw: Mapping[str, Any], where: str = "evaluator", timeout: float = MAX_SETUP_S
) -> dict[str, Any]:
    """Score the desktop's state with the evaluator `raw`.

    Returns:
        ``score`` in [0, 1], ``conj``, and per metric its ``func``, ``score`` and the
        ``result`` and ``expected`` values it saw (bounded).

    Raises:
        InvalidParams: A malformed evaluator, an unknown getter or metric (naming it).
        ToolError: A getter or a postconfig step failed.
    """
    evaluator = Fields(raw, where)
    failed = host.agent_status().get("status") == "failed"
    if evaluator.raw.get("func") == INFEASIBLE:
        # OSWorld's convention: the task cannot be done, and the agent scores by saying so.
        return {"score": _score(failed), "conj": "and", "infeasible": True, "agent_failed": failed}
    names = _names(evaluator)
    metrics = [METRICS.get(name, field) for name, field in names]
    results = _per_metric(evaluator, "result", len(names), required=True)
    expected = _per_metric(evaluator, "expected", len(names), required=False)
    options = _per_metric(evaluator, "options", len(names), required=False)
    conj = evaluator.string("conj", "and")
    if conj not in ("and", "or"):
        raise evaluator.refuse("conj", f"must be 'and' or 'or', not {conj!r}")
    for config in [*results, *expected]:
        if config is not None:
            GETTERS.get(config.raw.get("type"), config.at("type"))
    postconfig = evaluator.raw.get("postconfig")
    if postconfig is not None:
        if not isinstance(postconfig, list):
            raise evaluator.refuse("postconfig", "must be a list of setup steps")
        run_steps(host, postconfig, evaluator.at("postconfig"), timeout)
    scored = [
        _score_one(
            host,
            name,
            metric,
            results[index],
            expected[index],
            options[index],
            evaluator.at("expected"),
        )
        for index, ((name, _), metric) in enumerate(zip(names, metrics, strict=True))
    ]
    scores = [item["score"] for item in scored]
    score = max(scores) if conj == "or" else _all_of(scores)
    if failed:  # OSWorld: an agent that gave up (vm.fail) on a feasible task scores 0
        return {"score": 0.0, "conj": conj, "metrics": scored, "agent_failed": True}
    return {"score": min(1.0, max(0.0, score)), "conj": conj, "metrics": scored}


def _score(ok: bool) -> float:
    return 1.0 if ok else 0.0


def _all_of(scores: list[float]) -> float:
    """``and``: nothing when one metric failed outright, else the mean (OSWorld's rule)."""
    return 0.0 if min(scores) == 0 else sum(scores) / len(scores)


def _names(evaluator: Fields) -> list[tuple[str, str]]:
    func = evaluator.raw.get("func")
    if isinstance(func, str):
        return [(func, evaluator.at("func"))]
    if isinstance(func, list) and func:
        return [(name, f"{evaluator.at('func')}.{index}") for index, name in enumerate(func)]
    raise evaluator.refuse("func", "must be a metric name or a non-empty list of them")


def _per_metric(evaluator: Fields, name: str, count: int, *, required: bool) -> list[Fields | None]:
    """One config per metric: a list as long as ``func``, or one object for one metric."""
    if evaluator.raw.get(name) is None and not required:
        return [None] * count
    configs: list[Fields | None] = list(evaluator.objects(name))
    if len(configs) != count:
        raise evaluator.refuse(
            name, f"holds {len(configs)} items: one per metric ({count}) is needed"
        )
    return configs


def _score_one(
    host: TaskHost,
    name: str,
    metric: Metric,
    result_config: Fields | None,
    expected_config: Fields | None,
    options: Fields | None,
    missing_where: str,
) -> dict[str, Any]:
    assert result_config is not None
    result = get(host, result_config)
    expected = get(host, expected_config) if expected_config is not None else None
    options = options or Fields({}, "")
    if result is None:  # what the getter looked for is not there (OSWorld scores 0)
        score = 0.0
    else:
        try:
            score = float(metric(result, expected, options))
        except BadExpected as exc:
            # The expected value is at fault (or, with none given, its absence).
            where = expected_config.where if expected_config is not None else missing_where
            raise InvalidParams(f"{where} {exc} (for {name})", field=where) from None
    return {
        "func": name,
        "score": score,
        "result": _evidence(result_config, result),
        "expected": _evidence(expected_config, expected) if expected_config is not None else None,
    }


def _evidence(config: Fields, value: Any) -> dict[str, Any]:
    """What a getter returned, cut to `MAX_EVIDENCE_CHARS`."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    evidence: dict[str, Any] = {"type": config.raw.get("type")}
    if value is None:
        evidence["value"] = None
        evidence["missing"] = True
    elif len(text) > MAX_EVIDENCE_CHARS:
        evidence["value"] = text[:MAX_EVIDENCE_CHARS]
        evidence["truncated"] = True
    else:
        evidence["value"] = value
    return evidence
