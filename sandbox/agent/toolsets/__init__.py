"""Toolsets the agent can enable, one module each.

A module here named ``<name>.py`` defines
``create_toolset(context: AgentContext) -> Toolset`` and is enabled by listing
``<name>`` in ``SANDBOX_AGENT_TOOLSETS``. Modules import only the standard library
and sibling agent modules (relatively), as the agent is copied alone into images.
"""
