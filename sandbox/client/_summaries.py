"""What `Sandbox` makes of envelopes: AgentFlow's summaries and plain lists.

No I/O here: `Sandbox`'s async methods and their blocking twins send the same
requests and shape the answers with these functions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from sandbox.client._envelope import Envelope
from sandbox.errors import SandboxError

Resources: TypeAlias = str | Sequence[str] | Mapping[str, Mapping[str, Any] | None]
"""A resource type, several, or ``{resource type: session config}``."""


def resource_configs(
    resources: Resources, config: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """``{resource type: session config}`` for `Sandbox.create_session`'s arguments.

    Raises:
        TypeError: `resources` is none of the accepted shapes.
    """
    if isinstance(resources, str):
        return {resources: dict(config or {})}
    if isinstance(resources, Mapping):
        return {str(name): dict(options or {}) for name, options in resources.items()}
    if isinstance(resources, Sequence) and all(isinstance(name, str) for name in resources):
        return {name: dict(config or {}) for name in resources}
    raise TypeError(
        "resources must be a resource type, a list of them or {resource type: config}, "
        f"not {type(resources).__name__}"
    )


def resource_names(resources: str | Sequence[str]) -> list[str]:
    """One resource type or several, as a list."""
    return [resources] if isinstance(resources, str) else list(resources)


def split_custom_name(config: Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """A session config without its ``custom_name`` key, and that name."""
    options = dict(config or {})
    name = options.pop("custom_name", None)
    return options, None if name is None else str(name)


def merged_params(params: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """`params` plus the `extra` values it lacks (``None`` values left out).

    Pipelines pass per-task values (``seed_path``, ...) as keyword arguments of
    `Sandbox.execute`; a parameter the call names itself wins.
    """
    merged = dict(params or {})
    for key, value in extra.items():
        if key not in merged and value is not None:
            merged[key] = value
    return merged


def _data(envelope: Envelope) -> dict[str, Any]:
    data = envelope.data
    return data if isinstance(data, dict) else {}


def created_entry(envelope: Envelope, requested: Mapping[str, Any]) -> dict[str, Any]:
    """One resource's line in a create summary, from the server's answer.

    As in AgentFlow, a session counts as created when the code is 0 and the
    session is active (``session_status``; a server that does not say is taken at
    its code).
    """
    data = _data(envelope)
    ok = envelope.ok and data.get("session_status", "active") == "active"
    entry: dict[str, Any] = {
        "status": "success" if ok else "error",
        "session_id": data.get("session_id"),
        "session_name": data.get("session_name"),
        "config_applied": data.get("config_applied", dict(requested)),
        "message": envelope.message,
        "code": envelope.code,
    }
    if ok:
        # The server answers "exists" when the worker already had this session.
        entry["created"] = data.get("status", "created") == "created"
    else:
        entry["error"] = data.get("error") or envelope.message
    return entry


def failed_entry(error: SandboxError) -> dict[str, Any]:
    """One resource's line in a summary when no envelope came back."""
    return {"status": "error", "error": str(error), "code": int(error.code)}


def _overall(entries: Mapping[str, Mapping[str, Any]]) -> tuple[str, int]:
    succeeded = sum(1 for entry in entries.values() if entry.get("status") == "success")
    if succeeded == len(entries):
        return "success", succeeded
    return ("partial" if succeeded else "error"), succeeded


def create_summary(entries: dict[str, dict[str, Any]], started: float) -> dict[str, Any]:
    """AgentFlow's create summary: ``{status, create_time_ms, total, success, sessions}``.

    Args:
        entries: One line per resource type (`created_entry` or `failed_entry`).
        started: `time.perf_counter()` when the creation began.
    """
    status, succeeded = _overall(entries)
    return {
        "status": status,
        "create_time_ms": (time.perf_counter() - started) * 1000,
        "total": len(entries),
        "success": succeeded,
        "sessions": entries,
    }


def destroyed_entry(envelope: Envelope) -> dict[str, Any]:
    """One resource's line in a destroy summary, from the server's answer."""
    destroyed = _data(envelope).get("destroyed") or []
    entry: dict[str, Any] = {
        "status": "success" if envelope.ok else "error",
        "session_id": destroyed[0] if destroyed else None,
        "message": envelope.message,
        "code": envelope.code,
    }
    if not envelope.ok:
        entry["error"] = envelope.message
    return entry


def destroy_summary(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """AgentFlow's destroy summary: ``{status, total, success, details}``."""
    status, succeeded = _overall(entries)
    return {"status": status, "total": len(entries), "success": succeeded, "details": entries}


def session_list(envelope: Envelope) -> list[dict[str, Any]]:
    """The sessions a ``/session/list`` envelope lists.

    Raises:
        SandboxError: The envelope is an error (the subclass its code names).
    """
    sessions = _data(envelope.raise_for_code()).get("sessions")
    return [session for session in sessions or [] if isinstance(session, dict)]


def listed_types(sessions: Sequence[Mapping[str, Any]]) -> list[str]:
    """The resource types of `sessions`, each once, in order."""
    types = [session.get("resource_type") for session in sessions]
    return list(dict.fromkeys(name for name in types if isinstance(name, str)))


def reinit_result(
    resource_type: str,
    old_session_id: str | None,
    created: dict[str, Any],
    requested: Mapping[str, Any] | None,
    started: float,
) -> dict[str, Any]:
    """AgentFlow's `reinitialize` answer from the new session's create line.

    Args:
        resource_type: The resource type made anew.
        old_session_id: The session destroyed first, if there was one.
        created: The new session's `created_entry` (or `failed_entry`).
        requested: The config asked for, ``custom_name`` included.
        started: `time.perf_counter()` when the reinitialisation began.
    """
    result: dict[str, Any] = {
        "status": created["status"],
        "resource_type": resource_type,
        "old_session_id": old_session_id,
    }
    if created["status"] != "success":
        result["error"] = created.get("error")
        result["code"] = created.get("code")
        return result
    result.update(
        new_session_id=created["session_id"],
        new_session_name=created["session_name"],
        config_applied=dict(requested or {}),
        reinit_time_ms=(time.perf_counter() - started) * 1000,
    )
    return result
