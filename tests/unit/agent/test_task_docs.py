"""The README's tables of setup steps, getters and metrics name exactly what the
registries hold: a new one is documented, a renamed one is not left behind."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.agent.tasks.getters import GETTERS
from sandbox.agent.tasks.metrics import METRICS
from sandbox.agent.tasks.registry import Registry
from sandbox.agent.tasks.steps import STEPS

README = Path(__file__).resolve().parents[3] / "README.md"
SECTION = "### Tasks: setup and evaluation (OSWorld style)"


def _first_column(header: str) -> list[str]:
    """The backticked names in the first cell of each row of the table whose header
    row starts with `header`, in the README's task section."""
    text = README.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ")]
    rows = section.split(f"\n| {header} |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    names = []
    for row in rows:
        assert row.startswith("| "), row
        names += re.findall(r"`([^`]+)`", row.split(" | ", 1)[0])
    return names


@pytest.mark.parametrize(
    ("header", "registry"),
    [("Step", STEPS), ("Getter (`type`)", GETTERS), ("Metric (`func`)", METRICS)],
)
def test_the_readme_table_lists_every_registered_name_once(
    header: str, registry: Registry[Callable[..., object]]
) -> None:
    names = _first_column(header)
    assert len(names) == len(set(names)), names
    assert sorted(names) == registry.names
