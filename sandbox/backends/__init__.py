"""Resource types the server offers, one module per image."""

from __future__ import annotations

from .base import ResourceType, SessionConfig, ToolSpec
from .declared import ToolParams
from .desktop import VM
from .rag import RAG
from .shell import BASH, CODE

RESOURCE_TYPES: tuple[ResourceType, ...] = (BASH, CODE, RAG, VM)

__all__ = ["RESOURCE_TYPES", "ResourceType", "SessionConfig", "ToolParams", "ToolSpec"]
