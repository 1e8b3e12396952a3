"""What the request being handled is about, for envelopes and log lines.

`TraceMiddleware` sets the trace id and clears the others for every request; the
routes set the worker and, once the call has run, the session.
"""

from __future__ import annotations

import contextvars

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")
"""The request's trace id (its ``X-Trace-ID`` or a new one)."""
worker_var: contextvars.ContextVar[str] = contextvars.ContextVar("worker", default="")
"""The worker whose request is being handled."""
session_var: contextvars.ContextVar[str] = contextvars.ContextVar("session", default="")
"""The session the request ran in, once known."""


def note_session(*session_ids: str | None) -> None:
    """Name the session(s) the request ran in, for the rest of its log lines."""
    named = [session_id for session_id in session_ids if session_id]
    if named:
        session_var.set(",".join(dict.fromkeys(named)))


def request_context() -> dict[str, str]:
    """The trace id, worker and session of the request being handled (empty ones left out)."""
    context = {
        "trace_id": trace_id_var.get(),
        "worker": worker_var.get(),
        "session": session_var.get(),
    }
    return {key: value for key, value in context.items() if value}


__all__ = ["note_session", "request_context", "session_var", "trace_id_var", "worker_var"]
