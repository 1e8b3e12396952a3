"""applied_config: a pure function of resource type, config and default limits, so
the pools and the sessions agree on which pool a session belongs to."""

from __future__ import annotations

import copy

from sandbox.backends import RESOURCE_TYPES
from sandbox.config import ResourceLimits
from sandbox.sessions.applied import applied_config
from sandbox.sessions.pools import pool_key
from sandbox.sessions.registry import ToolRegistry

REGISTRY = ToolRegistry(RESOURCE_TYPES)


def test_defaults_fill_what_the_session_did_not_ask_for() -> None:
    bash = REGISTRY.resource("bash")
    defaults = ResourceLimits(memory="768m", cpus=1.5, pids=200)
    applied = applied_config(bash, REGISTRY.validate_config(bash, {}), defaults)
    assert (applied["memory"], applied["cpus"], applied["pids"]) == ("768m", 1.5, 200)
    assert applied["network"] is bash.default_network


def test_what_the_session_asked_for_wins_over_the_defaults() -> None:
    bash = REGISTRY.resource("bash")
    config = REGISTRY.validate_config(bash, {"memory": "2g", "pids": 64, "network": True})
    applied = applied_config(bash, config, ResourceLimits(memory="768m", pids=200))
    assert (applied["memory"], applied["pids"], applied["network"]) == ("2g", 64, True)


def test_same_inputs_same_output_and_nothing_changed() -> None:
    vm = REGISTRY.resource("vm")
    config = REGISTRY.validate_config(vm, {"screen_size": [1024, 768]})
    defaults = ResourceLimits()
    before = (copy.deepcopy(config.model_dump()), defaults.model_dump())
    first = applied_config(vm, config, defaults)
    first["pids"] = -1  # a caller editing its copy changes no later answer
    second = applied_config(vm, config, defaults)
    assert second["pids"] == defaults.pids
    assert (config.model_dump(), defaults.model_dump()) == before
    assert pool_key("vm", second) == pool_key("vm", applied_config(vm, config, defaults))


def test_other_defaults_make_another_pool() -> None:
    bash = REGISTRY.resource("bash")
    config = REGISTRY.validate_config(bash, {})
    small = applied_config(bash, config, ResourceLimits(pids=100))
    large = applied_config(bash, config, ResourceLimits(pids=300))
    assert pool_key("bash", small) != pool_key("bash", large)
