"""pyautogui programs: which are accepted, and the runner that executes them.

Agents trained on OSWorld-style tasks answer with Python such as::

    import pyautogui
    import time
    pyautogui.click(120, 48)
    time.sleep(0.5)
    pyautogui.typewrite('hello', interval=0.02)

A program is accepted when every statement is ``import pyautogui``, ``import
time``, a call ``pyautogui.<name>(...)`` or ``time.sleep(...)``, and every
argument is built from literals, arithmetic, containers, subscripts and other
``pyautogui`` calls or attributes (``pyautogui.size()[0] // 2``). Names, other
modules, assignments, loops and private attributes are refused before anything
runs, so what runs is what a reader of the program expects: mouse and keyboard
actions, not arbitrary Python (`run_command` exists for that).

Accepted programs run in a fresh ``python3`` with the real pyautogui, which talks
to the desktop through its own X connection (`RUNNER`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

ALLOWED_MODULES = ("pyautogui", "time")

_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_ALLOWED_SUMMARY = (
    "only `import pyautogui`, `import time`, `time.sleep(...)` and calls "
    "`pyautogui.<function>(...)` whose arguments are literals (numbers, strings, "
    "lists, tuples, dicts), arithmetic on them, or other pyautogui calls"
)


class RejectedCode(ValueError):
    """A program that is not plain pyautogui calls.

    Attributes:
        line: The offending line of the program, if known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{message}; allowed: {_ALLOWED_SUMMARY}")
        self.line = line


@dataclass(frozen=True)
class _Reject:
    message: str
    node: ast.AST


def check_program(source: str) -> None:
    """Accept `source` or say what in it is not allowed.

    Raises:
        RejectedCode: A syntax error or a statement outside the allowed forms.
    """
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as exc:
        raise RejectedCode(f"syntax error: {exc.msg}", exc.lineno) from None
    for reject in _statement_problems(tree):
        raise RejectedCode(reject.message, getattr(reject.node, "lineno", None))


def _statement_problems(tree: ast.Module) -> Iterator[_Reject]:
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.name not in ALLOWED_MODULES or alias.asname not in (None, alias.name):
                    shown = alias.name + (f" as {alias.asname}" if alias.asname else "")
                    yield _Reject(f"`import {shown}` is not allowed", statement)
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            yield from _call_problems(statement.value, top_level=True)
        elif isinstance(statement, ast.Expr):
            yield _Reject(f"`{_shown(statement)}` is not a call", statement)
        else:
            yield _Reject(f"`{_shown(statement)}` is not allowed", statement)


def _call_problems(call: ast.Call, *, top_level: bool) -> Iterator[_Reject]:
    func = call.func
    target = _dotted(func)
    if target is None or not _is_allowed_function(target, top_level=top_level):
        yield _Reject(f"calling `{_shown(func)}` is not allowed", call)
        return
    for argument in call.args:
        if isinstance(argument, ast.Starred):
            yield _Reject("`*` arguments are not allowed", argument)
        else:
            yield from _value_problems(argument)
    for keyword in call.keywords:
        if keyword.arg is None:
            yield _Reject("`**` arguments are not allowed", keyword.value)
        else:
            yield from _value_problems(keyword.value)


def _is_allowed_function(target: tuple[str, ...], *, top_level: bool) -> bool:
    if len(target) != 2 or target[1].startswith("_"):
        return False
    module, name = target
    if module == "pyautogui":
        return True
    # time.sleep inside an argument would only delay computing a value.
    return top_level and module == "time" and name == "sleep"


def _value_problems(node: ast.expr) -> Iterator[_Reject]:
    if isinstance(node, ast.Constant):
        return
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        for element in node.elts:
            yield from _value_problems(element)
    elif isinstance(node, ast.Dict):
        for key in node.keys:
            if key is None:
                yield _Reject("`**` in a dict is not allowed", node)
            else:
                yield from _value_problems(key)
        for value in node.values:
            yield from _value_problems(value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        yield from _value_problems(node.operand)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS):
        yield from _value_problems(node.left)
        yield from _value_problems(node.right)
    elif isinstance(node, ast.Subscript):
        yield from _value_problems(node.value)
        yield from _value_problems(node.slice)
    elif isinstance(node, ast.Slice):
        for part in (node.lower, node.upper, node.step):
            if part is not None:
                yield from _value_problems(part)
    elif isinstance(node, ast.Call):
        yield from _call_problems(node, top_level=False)
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            yield _Reject(f"the private attribute `{node.attr}` is not allowed", node)
        elif _dotted(node) is not None:
            if _dotted(node) != ("pyautogui", node.attr):
                yield _Reject(f"`{_shown(node)}` is not allowed", node)
        elif isinstance(node.value, ast.Call):
            yield from _call_problems(node.value, top_level=False)  # pyautogui.size().width
        else:
            yield _Reject(f"`{_shown(node)}` is not allowed", node)
    elif isinstance(node, ast.Name):
        yield _Reject(f"the name `{node.id}` is not allowed (no variables)", node)
    else:
        yield _Reject(f"`{_shown(node)}` is not allowed as an argument", node)


def _shown(node: ast.AST, limit: int = 60) -> str:
    """The first line of `node`'s source, shortened for a message."""
    lines = ast.unparse(node).splitlines()
    text = lines[0] if lines else type(node).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dotted(node: ast.expr) -> tuple[str, ...] | None:
    """``pyautogui.click`` -> ``("pyautogui", "click")``; None for anything else."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return (node.value.id, node.attr)
    return None


# The program `python3 -c RUNNER <pause> <result fd>` runs: reads a JSON list of
# accepted program texts on stdin and runs them in order, statement by statement,
# so the value of each top-level call (pyautogui.position(), ...) can be reported.
# It answers with one JSON object on the result descriptor, kept apart from the
# programs' own stdout and stderr. Built from strings so the agent, which runs
# without pyautogui, never imports it.
RUNNER = r"""
import ast, json, os, sys, time, traceback
pause, result_fd = float(sys.argv[1]), int(sys.argv[2])
def answer(payload):
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        json.dump(payload, out)
try:
    import pyautogui
except BaseException as exc:
    answer({"ok": False, "stage": "import", "type": type(exc).__name__, "message": str(exc)[:2000]})
    raise SystemExit(3)
pyautogui.FAILSAFE = False
pyautogui.PAUSE = pause
programs = json.load(sys.stdin)
values = []
namespace = {"pyautogui": pyautogui, "time": time}
for index, source in enumerate(programs):
    name = "<commands.%d>" % index
    for statement in ast.parse(source, name).body:
        try:
            if isinstance(statement, ast.Expr):
                code = compile(ast.Expression(statement.value), name, "eval")
                value = eval(code, namespace)
                if value is not None:
                    shown = repr(value)[:2000]
                    values.append({"command": index, "line": statement.lineno, "value": shown})
            else:
                exec(compile(ast.Module([statement], []), name, "exec"), namespace)
        except BaseException as exc:
            traceback.print_exc()
            answer({"ok": False, "stage": "run", "command": index, "line": statement.lineno,
                    "type": type(exc).__name__, "message": str(exc)[:2000], "values": values})
            raise SystemExit(1)
answer({"ok": True, "values": values})
"""
