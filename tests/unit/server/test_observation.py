"""A vm session's `observation`: the screen and/or the tree with every action's result."""

from __future__ import annotations

from typing import Any

from sandbox.errors import BackendError
from sandbox.sessions.pools import pool_key

from .conftest import Harness


async def _screen(params: dict[str, Any]) -> dict[str, Any]:
    return {"image": "iVBORw0KGgoFAKE", "size": [1280, 800], "format": "png"}


async def _tree(params: dict[str, Any]) -> dict[str, Any]:
    return {"tree": "frame\tmousepad\t\t\t0,0\t800,600", "nodes": 1, "truncated": False}


async def _create(harness: Harness, observation: str) -> dict[str, Any]:
    body = {"worker_id": "w1", "resource_type": "vm", "config": {"observation": observation}}
    return await harness.post("/session/create", body)


async def _click(harness: Harness) -> dict[str, Any]:
    body = {"worker_id": "w1", "action": "vm:click", "params": {"x": 5, "y": 5}}
    return await harness.post("/execute", body)


async def test_both_observations_join_every_action_but_the_observing_ones(
    harness: Harness,
) -> None:
    harness.agents.handlers.update({"vm.screenshot": _screen, "vm.accessibility_tree": _tree})
    created = await _create(harness, "both")
    assert created["data"]["config_applied"]["observation"] == "both"
    clicked = await _click(harness)
    assert clicked["code"] == 0, clicked
    assert clicked["data"]["params"] == {"x": 5, "y": 5, "button": "left", "clicks": 1}
    assert clicked["data"]["screenshot"] == "iVBORw0KGgoFAKE"
    assert clicked["data"]["accessibility_tree"].startswith("frame\tmousepad")
    shot = await harness.post("/execute", {"worker_id": "w1", "action": "vm:screenshot"})
    assert "accessibility_tree" not in shot["data"]
    assert harness.agents.calls["vm.screenshot"] == 2  # after the click, and as itself


async def test_without_an_observation_results_are_as_they_were(harness: Harness) -> None:
    await _create(harness, "none")
    clicked = await _click(harness)
    assert set(clicked["data"]) == {"tool", "params"}
    assert harness.agents.calls["vm.screenshot"] == 0


async def test_an_observation_that_fails_is_named_and_the_action_still_answers(
    harness: Harness,
) -> None:
    async def broken(params: dict[str, Any]) -> dict[str, Any]:
        raise BackendError("no accessibility bus")

    harness.agents.handlers["vm.accessibility_tree"] = broken
    await _create(harness, "a11y_tree")
    clicked = await _click(harness)
    assert clicked["code"] == 0, clicked
    assert clicked["data"]["observation_error"] == "accessibility_tree: no accessibility bus"
    assert "accessibility_tree" not in clicked["data"]


def test_observing_sessions_claim_from_the_same_pool() -> None:
    plain = {"memory": "1g", "screen_size": [1280, 800]}
    assert pool_key("vm", {**plain, "observation": "both", "record": True}) == pool_key("vm", plain)


async def _computer_use(harness: Harness, **params: Any) -> dict[str, Any]:
    body = {"worker_id": "w1", "action": "vm:computer_use", "params": params}
    return await harness.post("/execute", body)


async def test_a_computer_use_screenshot_is_not_observed_twice(harness: Harness) -> None:
    async def computer_use(params: dict[str, Any]) -> dict[str, Any]:
        # As the agent answers: the screenshot step's own result, and the action.
        if params["action"] == "screenshot":
            return {**await _screen({}), "action": "screenshot", "steps": []}
        return {"action": params["action"], "steps": []}

    harness.agents.handlers.update(
        {"vm.screenshot": _screen, "vm.accessibility_tree": _tree, "vm.computer_use": computer_use}
    )
    await _create(harness, "both")
    shot = await _computer_use(harness, action="screenshot")
    assert shot["code"] == 0, shot
    assert shot["data"]["image"] == "iVBORw0KGgoFAKE"
    assert "screenshot" not in shot["data"]
    assert "accessibility_tree" not in shot["data"]
    assert harness.agents.calls["vm.screenshot"] == 0
    assert harness.agents.calls["vm.accessibility_tree"] == 0

    clicked = await _computer_use(harness, action="left_click", coordinate=[5, 5])
    assert clicked["code"] == 0, clicked
    assert clicked["data"]["screenshot"] == "iVBORw0KGgoFAKE"
    assert clicked["data"]["accessibility_tree"].startswith("frame\tmousepad")
    assert harness.agents.calls["vm.screenshot"] == 1


async def test_a_tree_read_gets_no_screenshot_added(harness: Harness) -> None:
    harness.agents.handlers.update({"vm.screenshot": _screen, "vm.accessibility_tree": _tree})
    await _create(harness, "screenshot")
    tree = await harness.post("/execute", {"worker_id": "w1", "action": "vm:accessibility_tree"})
    assert tree["code"] == 0, tree
    assert "screenshot" not in tree["data"]
    assert harness.agents.calls["vm.screenshot"] == 0
