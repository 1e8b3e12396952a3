"""The ``desktop`` toolset's task tools: ``vm.setup`` and ``vm.evaluate``.

They follow OSWorld's task files: a task's ``config`` is a list of setup steps
(``{"type": "launch", "parameters": {...}}``) and its ``evaluator`` an object
naming getters (``result``, ``expected``) and metrics (``func``). The step types
are listed here; the agent refuses an unknown one (1002 naming ``steps.N.type``
and the type) before any step runs. Each step's parameters, each getter and
each metric are checked by the agent (`sandbox/agent/tasks/`), naming the field.
"""

from __future__ import annotations

from .common import timeout
from .spec import Param, Shape, ToolDeclaration

STEP_TYPES = (
    "launch",
    "open",
    "upload_file",
    "download",
    "execute",
    "command",
    "sleep",
    "activate_window",
    "close_window",
    "chrome_open_tabs",
    "chrome_close_tabs",
)
"""The setup steps the agent runs, by OSWorld's names (``command`` is ``execute``)."""
MAX_STEPS = 100
"""Most steps in one ``vm.setup`` call (or one session config)."""
MAX_UPLOAD_BYTES = 16 << 20
"""Most bytes all the ``upload_file`` steps of one call may write (decoded)."""
MAX_SETUP_S = 600.0
"""Longest a whole setup may take: its steps' own timeouts and sleeps together."""

STEP = Shape(
    "SetupStep",
    "One setup step, as in an OSWorld task's `config` list.",
    (
        Param(
            "type",
            "string",
            "What the step does: " + ", ".join(STEP_TYPES) + ".",
            required=True,
            # No enum: the agent's refusal names the unknown type; pydantic's would not.
        ),
        Param(
            "parameters",
            "object",
            "The step's own parameters (OSWorld's), e.g. {'command': ['xterm']} for launch.",
        ),
    ),
)

_STEPS = Param(
    "steps",
    "array",
    "Steps run in order; the first that fails stops the call and is named.",
    required=True,
    min_length=1,
    max_length=MAX_STEPS,
    items=Param("step", "object", shape=STEP),
)

TOOLS = (
    ToolDeclaration(
        "vm",
        "setup",
        "Prepare a task: run OSWorld-style setup steps in order (launch, open, "
        "upload_file with base64 `content`, download (url, path; needs network), "
        "execute/command, sleep, activate_window, close_window, chrome_open_tabs "
        "(urls_to_open), chrome_close_tabs (urls_to_close); uploads at most "
        f"{MAX_UPLOAD_BYTES >> 20} MiB per call). Returns "
        "what each step did in `steps`; a failing step fails the call, naming it.",
        (_STEPS, timeout(f"Seconds the whole setup may take (at most {MAX_SETUP_S:g}).")),
    ),
    ToolDeclaration(
        "vm",
        "evaluate",
        "Score the desktop's state with an OSWorld-style evaluator: getters (`result`, "
        "`expected`) fetch values, metrics (`func`, several joined by `conj` and/or) "
        "compare them. Returns `score` in [0, 1], each metric's score and the "
        "`evidence` (what each getter returned, bounded).",
        (
            Param(
                "evaluator",
                "object",
                "OSWorld's evaluator object: func, result, expected, options, conj, "
                "postconfig (setup steps run first).",
                required=True,
            ),
            timeout("Seconds the whole evaluation (postconfig and getters) may take."),
        ),
    ),
)
"""The task tools, appended to the ``vm`` tools (`sandbox/agent/tools/desktop.py`)."""
