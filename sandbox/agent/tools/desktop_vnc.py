"""The ``vm`` desktop's ``vnc`` stream, the ``/ui`` live view (its bounds only).

The agent serves the stream (``sandbox/agent/toolsets/_desktop_vnc.py``) and
enforces these bounds whatever the server asks; the server's ``live_view``
settings (`sandbox/config.py`) are capped by them, so no setting asks for a
view the agent refuses.
"""

from __future__ import annotations

VNC_STREAM = "vnc"
"""The stream's name (``GET /stream/vnc`` on the agent)."""
MAX_VIEWERS = 4
"""Most x11vnc processes (viewers) at once in one session."""
MAX_SECONDS = 4 * 3600.0
"""Longest a viewer may watch in one connection."""
