"""Profile files: a mapping of settings in JSON or YAML, ours or AgentFlow's.

`Settings` reads the profile named by ``config_file`` through `read_profile`;
``sandbox serve`` reads it again for the notes it logs at start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ProfileError(ValueError):
    """A profile file cannot be read, parsed or translated; the message names the
    file and, where there is one, the key."""


@dataclass(frozen=True)
class Profile:
    """What a profile file says, as settings."""

    values: dict[str, Any]
    """Settings, by field name (nested mappings for nested models)."""
    notes: tuple[str, ...] = ()
    """What the file asks for that these settings cannot give, one line each
    naming the key (AgentFlow files: resource types and options this server lacks)."""


def read_profile(path: Path) -> Profile:
    """Load a JSON or YAML profile, ours or AgentFlow's, as settings.

    Raises:
        ProfileError: The file is missing, unreadable or not a mapping, or an
            AgentFlow file has a malformed key or names an unset variable.
    """
    from .agentflow_config import is_agentflow_config, translate  # it imports config

    data = _read_mapping(path)
    if is_agentflow_config(data):
        return translate(data, path)
    return Profile(data)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"profile {path} is not valid JSON/YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path} must hold a mapping of settings")
    return data
