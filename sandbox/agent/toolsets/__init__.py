"""Toolsets the agent can enable, one module each.

A module here named ``<name>.py`` defines
``create_toolset(context: AgentContext) -> Toolset`` and is enabled by listing
``<name>`` in ``SANDBOX_AGENT_TOOLSETS``; its tools are those declared in
``sandbox/agent/tools/<name>.py`` (`tools.bind` refuses any other). A module whose
name starts with an underscore is part of a toolset, never one itself. Modules
import only the standard library and sibling agent modules (relatively), as the
agent is copied alone into images.
"""
