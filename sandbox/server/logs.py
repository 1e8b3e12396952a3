"""Server logs: one JSON object (or one text line) per record, with the request's context.

Every record logged while a request is handled carries its ``trace_id``, its
``worker`` and, once known, its ``session`` (the `context` variables), whichever
logger emitted it: the server's own, the session manager's or
uvicorn's. Secrets never reach the output: the configured API key and anything
after ``Bearer`` are replaced before a line is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

from ..config import Settings
from .context import request_context

_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s'\",;]+")
REDACTED = "[redacted]"
# Third-party loggers whose records go through the same handler.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class _Redacting(logging.Formatter):
    """A formatter that scrubs secrets from the finished line."""

    def __init__(self, secrets: Iterable[str] = (), fmt: str | None = None) -> None:
        super().__init__(fmt)
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every known secret and bearer token replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _BEARER.sub(rf"\1 {REDACTED}", text)


class JsonFormatter(_Redacting):
    """One JSON object per line: time, level, logger, message, the request context.

    A traceback, when there is one, is in ``exception``.

    Args:
        secrets: Strings that must never appear in a line (the API key).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
            **request_context(),
        }
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redact(self.formatStack(record.stack_info))
        # Redacted before encoding: JSON escapes would hide a secret from `redact`.
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(_Redacting):
    """``time LEVEL logger: message [trace_id=... worker=... session=...]``.

    Args:
        secrets: Strings that must never appear in a line (the API key).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as readable text, the request context appended."""
        line = super().format(record)
        context = request_context()
        if context:
            fields = " ".join(f"{key}={value}" for key, value in context.items())
            head, newline, rest = line.partition("\n")
            line = f"{head} [{fields}]{newline}{rest}"
        return self.redact(line)


def make_formatter(
    log_format: Literal["json", "text"], secrets: Iterable[str] = ()
) -> logging.Formatter:
    """The formatter of `log_format`, scrubbing `secrets`."""
    return JsonFormatter(secrets) if log_format == "json" else TextFormatter(secrets)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record, uvicorn's included, through one handler on `stream`.

    Replaces the root logger's handlers; uvicorn's loggers lose theirs and
    propagate to the root, so run uvicorn with ``log_config=None``.

    Args:
        settings: Supplies the level, the format and the API key to keep out.
        stream: Where lines go; stderr by default.

    Returns:
        The installed handler.
    """
    secrets = [settings.api_key.get_secret_value()] if settings.api_key else []
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(settings.log_format, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # One line per agent call would drown the server's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return handler


__all__ = ["REDACTED", "JsonFormatter", "TextFormatter", "configure_logging", "make_formatter"]
