"""A session config's setup steps, run in its new container before the create answers.

`vm` sessions may ask for OSWorld's setup steps in their config (``setup``);
the agent runs them with ``vm.setup`` (`sandbox/agent/tasks/steps.py`). A step
the agent refuses is a 1002 naming ``config.setup.N...``; one that fails is a
1003 naming the step, and the caller's create fails (its container removed).
"""

from __future__ import annotations

from typing import Any

from ..agent.tools.desktop_tasks import MAX_SETUP_S
from ..errors import InvalidParams, SandboxError, SandboxTimeout, SessionError
from ..runtime.agent import AgentClient
from .table import Session

_AGENT_FIELD = "params.steps"
_CONFIG_FIELD = "config.setup"


async def run_config_setup(agents: AgentClient, session: Session, config: Any) -> None:
    """Run `config`'s ``setup`` steps, if it has any, in `session`'s container.

    Raises:
        InvalidParams: The agent refused a step (naming ``config.setup.N...``).
        SessionError: A step failed or the whole setup ran out of time.
    """
    steps = getattr(config, "setup", None)  # only resource types with tasks have one
    if not steps:
        return
    tool = f"{session.resource_type}.setup"
    payload = {"steps": [step.model_dump() for step in steps], "timeout": MAX_SETUP_S}
    try:
        await agents.call(session.agent_url or "", session.token, tool, payload, MAX_SETUP_S)
    except InvalidParams as exc:
        field = _config_field(exc.field)
        message = exc.message.replace("steps.", f"{_CONFIG_FIELD}.", 1)
        raise InvalidParams(message, field=field, session_id=session.session_id) from None
    except SandboxTimeout as exc:
        raise SessionError(
            f"{_CONFIG_FIELD}: the setup steps did not finish in time: {exc.message}",
            session_id=session.session_id,
            data={"field": _CONFIG_FIELD},
        ) from None
    except SandboxError as exc:
        step = exc.data.get("step")
        field = f"{_CONFIG_FIELD}.{step}" if isinstance(step, int) else _CONFIG_FIELD
        raise SessionError(
            f"{field}: setup failed: {exc.message}",
            session_id=session.session_id,
            data={"field": field, **{k: v for k, v in exc.data.items() if k != "done"}},
        ) from None


def _config_field(field: str | None) -> str:
    if field and field.startswith(_AGENT_FIELD):
        return _CONFIG_FIELD + field[len(_AGENT_FIELD) :]
    return _CONFIG_FIELD
