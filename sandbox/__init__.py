"""Isolated, fast, recorded Docker execution environments for AI agents."""

__version__ = "0.1.0"
