"""``vm:accessibility_tree``: the desktop's widgets through AT-SPI (declaration only).

Appended to the ``vm`` tools in `desktop` (`sandbox/agent/tools/desktop.py`);
the agent's handler is in ``sandbox/agent/toolsets/_desktop_a11y.py``.
"""

from __future__ import annotations

from .common import timeout
from .spec import Param, ToolDeclaration

A11Y_FORMATS = ("linear", "xml")
DEFAULT_MAX_DEPTH = 30
MAX_DEPTH = 100
DEFAULT_MAX_NODES = 1000
MAX_NODES = 10_000
DEFAULT_MAX_CHILDREN = 100
MAX_CHILDREN = 1000

TOOLS = (
    ToolDeclaration(
        "vm",
        "accessibility_tree",
        "The accessibility tree of the desktop's programs (AT-SPI: GTK, Qt, ...): `tree` "
        "as text, `nodes` (how many), `truncated` (which caps cut it short: depth, "
        "nodes, children, time). format `linear`: a header and one tab-separated line "
        "per node: role, name, text, states, position (x, y), size (w, h), as OSWorld "
        "linearises it; `xml`: OSWorld's XML. Programs started before the session's "
        "D-Bus was up, or without AT-SPI support (xterm), do not appear.",
        (
            Param("format", "string", "`linear` or `xml`.", default="linear", enum=A11Y_FORMATS),
            Param(
                "max_depth",
                "integer",
                "Deepest level read (the desktop is 0, programs 1, their windows 2).",
                default=DEFAULT_MAX_DEPTH,
                minimum=1,
                maximum=MAX_DEPTH,
            ),
            Param(
                "max_nodes",
                "integer",
                "Most nodes read in all.",
                default=DEFAULT_MAX_NODES,
                minimum=1,
                maximum=MAX_NODES,
            ),
            Param(
                "max_children",
                "integer",
                "Most children read of any one node.",
                default=DEFAULT_MAX_CHILDREN,
                minimum=1,
                maximum=MAX_CHILDREN,
            ),
            Param(
                "showing_only",
                "boolean",
                "Leave out widgets not on the screen (not `showing`) and all below them.",
                default=True,
            ),
            timeout("Seconds before the read stops; the call answers 2002."),
        ),
        observes=True,
    ),
)
"""The accessibility tools, appended to the ``vm`` tools."""
