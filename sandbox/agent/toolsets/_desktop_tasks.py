"""The ``desktop`` toolset's task tools: ``vm.setup`` and ``vm.evaluate``.

The steps, getters and metrics live in `sandbox/agent/tasks/`; this module is
the desktop they act on (`DesktopTaskHost`): commands and programs go through
the program tools, and files, windows and the clipboard are reached by small
programs run as the session user, so a task can touch nothing the user could
not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..desktop import cdp, cdp_page
from ..errors import ToolFailed, ToolTimeout
from ..identity import SessionUser, popen_kwargs
from ..params import Params
from ..tasks.evaluation import evaluate
from ..tasks.host import BrowserTab, CommandOutput, WindowAction
from ..tasks.steps import run_steps
from ..tools.desktop_tasks import MAX_SETUP_S
from ._desktop_programs import ProgramTools

_FILE_TIMEOUT_S = 30.0
_X_TIMEOUT_S = 10.0
_WINDOW_WAIT_S = 5.0
_WINDOW_POLL_S = 0.2
_MAX_CLIPBOARD_BYTES = 1 << 20
_NO_SUCH_FILE = 3
_DEVTOOLS_TIMEOUT_S = 10.0
_MAX_PAGE_CHARS = 1 << 20
_PAGE_TEXT = f"document.body ? String(document.body.innerText).slice(0, {_MAX_PAGE_CHARS}) : ''"

# Reads (head) and writes (cat) as the session user: its rights, its symlinks,
# and a FIFO it planted blocks only this program, which the timeout kills.
_READ = 'if [ ! -e "$1" ]; then exit 3; fi; exec head -c "$2" -- "$1"'
_WRITE = 'mkdir -p -- "$(dirname -- "$1")" && exec cat > "$1"'

# Windows by EWMH, with python3-xlib, as the session user. argv: action
# (activate, close, title), then the name, strict and by_class for the first two.
# Titles are cut: any client of the display may set a huge one.
_WINDOWS = r"""
import json, sys
from Xlib import X, Xatom, display, error, protocol
d = display.Display()
root = d.screen().root
atom = d.intern_atom
def title(window):
    try:
        name = window.get_full_property(atom("_NET_WM_NAME"), atom("UTF8_STRING"))
        if name is not None:
            return name.value[:4096].decode("utf-8", "replace")
        name = window.get_wm_name()
        return (name.decode("latin-1") if isinstance(name, bytes) else (name or ""))[:4096]
    except error.XError:
        return ""
def message(window, kind, data):
    event = protocol.event.ClientMessage(window=window, client_type=atom(kind), data=(32, data))
    root.send_event(event, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)
action = sys.argv[1]
if action == "title":
    active = root.get_full_property(atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW)
    ids = [i for i in (active.value if active else []) if i]
    print(json.dumps(title(d.create_resource_object("window", ids[0])) if ids else None))
    sys.exit(0)
name, strict, by_class = sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
clients = root.get_full_property(atom("_NET_CLIENT_LIST"), Xatom.WINDOW)
matched = []
for wid in (clients.value if clients else []):
    window = d.create_resource_object("window", wid)
    try:
        labels = list(window.get_wm_class() or ()) if by_class else [title(window)]
    except error.XError:
        continue
    if any(label == name if strict else name in label for label in labels):
        matched.append(title(window))
        if action == "activate":
            message(window, "_NET_ACTIVE_WINDOW", [2, X.CurrentTime, 0, 0, 0])
        else:
            message(window, "_NET_CLOSE_WINDOW", [X.CurrentTime, 2, 0, 0, 0])
d.sync()
print(json.dumps(matched))
"""


class DesktopTaskHost:
    """The desktop as tasks see it (`sandbox.agent.tasks.host.TaskHost`).

    Args:
        programs: The program tools (run_command, launch) commands go through.
        tree: ``vm.accessibility_tree``'s handler (its reader runs as the user).
        status: What ``vm.done`` and ``vm.fail`` last recorded.
        env: The session's environment, DISPLAY included.
        home: The session user's home: where relative paths start.
        user: Who everything runs as; None: the agent's own user.
    """

    def __init__(
        self,
        programs: ProgramTools,
        *,
        tree: Callable[[Params], dict[str, Any]],
        status: Callable[[], Mapping[str, Any]],
        env: Mapping[str, str],
        home: str,
        user: SessionUser | None,
    ) -> None:
        self._programs = programs
        self._tree = tree
        self._status = status
        self._env = dict(env)
        self._home = home
        self._user = user

    def run(self, command: str, timeout: float) -> CommandOutput:
        """`command` through ``vm.run_command`` (its timeout is a `ToolTimeout`)."""
        data = self._programs.run_command(Params({"command": command, "timeout": timeout}))
        return CommandOutput(data["stdout"], data["stderr"], data["exit_code"])

    def launch(self, command: str) -> dict[str, Any]:
        """`command` through ``vm.launch``."""
        return self._programs.launch(Params({"command": command, "wait_for_window": False}))

    def read_file(self, path: str, limit: int) -> bytes | None:
        """Up to `limit` + 1 bytes of `path`, read by the session user."""
        done = self._as_user(
            ["bash", "-c", _READ, "read", self._resolve(path), str(limit + 1)], b"", _FILE_TIMEOUT_S
        )
        if done.returncode == _NO_SUCH_FILE:
            return None
        if done.returncode != 0:
            raise ToolFailed(f"cannot read {path}: {_reason(done)}")
        return done.stdout

    def write_file(self, path: str, data: bytes) -> None:
        """`data` written to `path` by the session user, its directories made."""
        argv = ["bash", "-c", _WRITE, "write", self._resolve(path)]
        done = self._as_user(argv, data, _FILE_TIMEOUT_S)
        if done.returncode != 0:
            raise ToolFailed(f"cannot write {path}: {_reason(done)}")

    def windows(
        self, action: WindowAction, name: str, *, strict: bool, by_class: bool
    ) -> list[str]:
        """Activate or close the windows matching `name`, waiting a while for one to open
        (a program launched by the step before may not have mapped its window yet)."""
        argv = [action, name, "1" if strict else "0", "1" if by_class else "0"]
        deadline = time.monotonic() + _WINDOW_WAIT_S
        while True:
            matched: list[str] = self._x(argv)
            if matched or time.monotonic() >= deadline:
                return matched
            time.sleep(_WINDOW_POLL_S)

    def active_window_title(self) -> str | None:
        """The title of the window manager's active window."""
        title: str | None = self._x(["title"])
        return title

    def clipboard(self) -> str:
        """The CLIPBOARD selection's text, by xclip ('' when nothing owns it)."""
        command = f"xclip -selection clipboard -o | head -c {_MAX_CLIPBOARD_BYTES}"
        done = self._as_user(["bash", "-c", command], b"", _X_TIMEOUT_S)
        return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else ""

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        time.sleep(seconds)

    def accessibility_tree(self, options: Mapping[str, Any]) -> str:
        """The tree, read by ``vm.accessibility_tree``'s reader (as the session user)."""
        tree: str = self._tree(Params(options))["tree"]
        return tree

    def browser_tabs(self) -> list[BrowserTab] | None:
        """Chromium's tabs by its DevTools port (127.0.0.1 in this container)."""
        try:
            return cdp.list_tabs(_DEVTOOLS_TIMEOUT_S)
        except cdp.NoDevTools:
            return None
        except cdp.DevToolsError as exc:
            raise ToolFailed(f"cannot read Chromium's tabs: {exc}") from None

    def page_text(self, tab: BrowserTab) -> str:
        """The visible text of `tab`'s page (at most `_MAX_PAGE_CHARS`)."""
        try:
            text = cdp.evaluate(tab.id, _PAGE_TEXT, _DEVTOOLS_TIMEOUT_S)
        except cdp.DevToolsError as exc:
            raise ToolFailed(f"cannot read the page {tab.url[:200]}: {exc}") from None
        # The page's own scripts may have replaced innerText or slice: check and cut here.
        return text[:_MAX_PAGE_CHARS] if isinstance(text, str) else ""

    def open_page(self, url: str, timeout: float) -> dict[str, str] | None:
        """`url` read in a tab of its own by DevTools (`cdp_page.read_page`)."""
        try:
            return cdp_page.read_page(url, timeout)
        except cdp.NoDevTools:
            return None
        except cdp.DevToolsError as exc:
            raise ToolFailed(f"cannot read the page {url[:200]}: {exc}") from None

    def close_tab(self, tab: BrowserTab) -> None:
        """Close `tab` by DevTools."""
        try:
            cdp.close_tab(tab.id, _DEVTOOLS_TIMEOUT_S)
        except cdp.DevToolsError as exc:
            raise ToolFailed(f"cannot close the tab {tab.url[:200]}: {exc}") from None

    def agent_status(self) -> Mapping[str, Any]:
        """What ``vm.done`` or ``vm.fail`` recorded last (``running`` before either)."""
        return self._status()

    def _x(self, argv: list[str]) -> Any:
        # -I: no module from the user's home or site directory stands in for Xlib.
        done = self._as_user([sys.executable, "-I", "-c", _WINDOWS, *argv], b"", _X_TIMEOUT_S)
        if done.returncode != 0:
            raise ToolFailed(f"cannot reach the windows: {_reason(done)}")
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise ToolFailed(f"the window helper answered {done.stdout[:200]!r}") from None

    def _resolve(self, path: str) -> str:
        """`path` with a leading ``~`` as the home (task files write ``~/file``)."""
        if path == "~" or path.startswith("~/"):
            return self._home + path[1:]
        return path

    def _as_user(
        self, argv: list[str], stdin: bytes, timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                cwd=self._home if os.path.isdir(self._home) else "/",
                env=self._env,
                timeout=timeout,
                check=False,
                start_new_session=True,
                **popen_kwargs(self._user),
            )
        except subprocess.TimeoutExpired:
            raise ToolTimeout(f"{argv[0]} did not finish within {timeout:g}s") from None


def _reason(done: subprocess.CompletedProcess[bytes]) -> str:
    text = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return text[-1][:500] if text else f"exit status {done.returncode}"


class TaskTools:
    """``vm.setup`` and ``vm.evaluate`` over one desktop.

    Args:
        host: The desktop the steps and getters act on.
    """

    def __init__(self, host: DesktopTaskHost) -> None:
        self._host = host

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {"setup": self.setup, "evaluate": self.evaluate}

    def setup(self, params: Params) -> dict[str, Any]:
        """``vm.setup``: run `steps` in order."""
        timeout = params.seconds("timeout", default=MAX_SETUP_S)
        return {"steps": run_steps(self._host, params.raw()["steps"], timeout=timeout)}

    def evaluate(self, params: Params) -> dict[str, Any]:
        """``vm.evaluate``: score the desktop with `evaluator`."""
        timeout = params.seconds("timeout", default=MAX_SETUP_S)
        return evaluate(self._host, params.raw()["evaluator"], timeout=timeout)
