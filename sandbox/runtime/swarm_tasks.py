"""What Swarm says about a service's task: the newest one, its node, why it failed.

Each function makes blocking Docker calls on the manager's low-level API client
(`api`): the runtime runs them in its threads.
"""

from __future__ import annotations

from typing import Any

import docker.errors


def newest_task(api: Any, service_id: str) -> dict[str, Any] | None:
    """The service's newest task (a one-replica service never restarted has one),
    or None before Swarm has made it."""
    tasks = api.tasks(filters={"service": service_id})
    return max(tasks, key=lambda t: str(t.get("CreatedAt", "")), default=None)


def node_is_down(api: Any, task: dict[str, Any] | None) -> bool:
    """Whether the node the task was given is gone or not ready."""
    if task is None or not task.get("NodeID"):
        return False
    try:
        node = api.inspect_node(task["NodeID"])
    except docker.errors.NotFound:
        return True
    return bool(((node.get("Status") or {}).get("State")) != "ready")


def task_failure(api: Any, image: str, task: dict[str, Any] | None) -> str:
    """Why the task of a service of `image` failed, naming its node; for a missing
    image, how to bring it there."""
    status = (task or {}).get("Status") or {}
    error = str(status.get("Err") or status.get("Message") or status.get("State"))
    node = _node_name(api, str((task or {}).get("NodeID") or ""))
    if "no such image" in error.lower():
        return (
            f"node {node} has no image {image}: load it there "
            "(`docker save IMAGE | docker -H NODE load`) or push it to the swarm's "
            "registry (`sandbox images build --push`)"
        )
    return f"the service's task failed on node {node}: {error}"


def _node_name(api: Any, node_id: str) -> str:
    if not node_id:
        return "(none)"
    try:
        node = api.inspect_node(node_id)
    except docker.errors.NotFound:
        return node_id[:12]
    return str(((node.get("Description") or {}).get("Hostname")) or node_id[:12])
