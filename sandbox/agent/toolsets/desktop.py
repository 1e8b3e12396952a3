"""The ``desktop`` toolset: a Linux desktop driven by screenshots, mouse and keyboard.

Creating the toolset connects to Xvfb (started, or adopted from the image's
entry point) and starts the window manager (`desktop.session`); the agent
answers ``/health`` only afterwards, when the screen can be captured. Tools that
need the window manager (input, programs) wait until it has taken over the
screen.

Tools (``vm.*``, declared in `sandbox/agent/tools/desktop.py`, which checks their
parameters): screenshot, click, double_click, right_click, move, drag, scroll,
type, key, hotkey, key_down, key_up, mouse_down, mouse_up, cursor_position
(`_desktop_input`); run_command, launch, pyautogui (`_desktop_programs`);
upload_file, download_file (`_desktop_files`); setup, evaluate
(`_desktop_tasks`); accessibility_tree (`_desktop_a11y`); computer_13,
computer_use (`_desktop_actions`, over the others); start_recording,
stop_recording, recording_read (`_desktop_recording`); wait, done, fail (here).
One stream, ``vnc``: the screen over RFB for the ``/ui`` live view (`_desktop_vnc`).

Coordinates are screen pixels from the top-left corner; one outside the screen
is an ``invalid_params`` error naming its parameter, and nothing is sent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..desktop.early import XVFB_ENV
from ..desktop.session import Desktop, DesktopError, DesktopSettings
from ..errors import ConfigError
from ..params import Params
from ..registry import AgentContext, StreamOpener, Tool, ToolHandler, Toolset
from ..tools import bind
from ..tools.desktop import TOOLS
from ..tools.desktop_vnc import VNC_STREAM
from ._desktop_a11y import A11yTools
from ._desktop_actions import ActionSpaceTools
from ._desktop_files import FileTools
from ._desktop_input import InputTools, Screen
from ._desktop_programs import ProgramTools
from ._desktop_recording import RecordingTools
from ._desktop_tasks import DesktopTaskHost, TaskTools
from ._desktop_vnc import VncViewers

# Tools that work before the window manager has taken over the screen; the
# others (input, programs) wait for it, as a window needs it to get the focus.
_NO_WINDOW_MANAGER_NEEDED = frozenset(
    {"screenshot", "cursor_position", "wait", "done", "fail", "stop_recording", "recording_read"}
)


class DesktopToolset(Toolset):
    """The tools of a `vm` session over one running desktop.

    Args:
        context: The agent's home, state directory, output limit and environment.
        settings: The desktop to start (from the environment when None).
        desktop: An already started desktop to use instead (tests); closed with
            the toolset.
    """

    name = "desktop"

    def __init__(
        self,
        context: AgentContext,
        settings: DesktopSettings | None = None,
        *,
        desktop: Desktop | None = None,
    ) -> None:
        settings = settings or DesktopSettings.from_environ(context.child_env)
        env = {key: value for key, value in context.child_env.items() if key != XVFB_ENV}
        env["DISPLAY"] = settings.display
        if desktop is None:
            desktop = Desktop(settings, env, user=context.user)
            desktop.start()
        try:
            self._screen = Screen(desktop)
        except BaseException:
            desktop.close()
            raise
        self._input = InputTools(self._screen)
        self._programs = ProgramTools(
            self._screen,
            home=context.home,
            scratch_dir=context.state_dir,
            env=env,
            output_limit=context.output_limit,
            user=context.user,
        )
        self._files = FileTools(context.home, context.user)
        self._a11y = A11yTools(cwd=context.home, env=env, user=context.user)
        # Beside the home, on the same disk quota (/home in the images).
        recordings = os.path.dirname(os.path.normpath(context.home))
        self._recorder = RecordingTools(
            self._screen, directory=recordings, env=env, user=context.user
        )
        self._vnc = VncViewers(env=env, user=context.user)
        self.status: dict[str, Any] = {"status": "running"}
        self._tasks = TaskTools(
            DesktopTaskHost(
                self._programs,
                tree=self._a11y.accessibility_tree,
                status=lambda: self.status,
                env=env,
                home=context.home,
                user=context.user,
            )
        )

    @property
    def width(self) -> int:
        """Screen width in pixels."""
        return self._screen.display.width

    @property
    def height(self) -> int:
        """Screen height in pixels."""
        return self._screen.display.height

    def tools(self) -> Sequence[Tool]:
        """Every ``vm.*`` tool."""
        handlers: dict[str, ToolHandler] = {
            **self._input.handlers(),
            **self._programs.handlers(),
            **self._files.handlers(),
            **self._tasks.handlers(),
            **self._a11y.handlers(),
            **self._recorder.handlers(),
            "wait": self.wait,
            "done": self.done,
            "fail": self.fail,
        }
        declarations = {declaration.name: declaration for declaration in TOOLS}
        actions = ActionSpaceTools(self._screen, declarations, dict(handlers))
        return bind(TOOLS, {**handlers, **actions.handlers()}, self._on_screen)

    def streams(self) -> Mapping[str, StreamOpener]:
        """``vnc``: the screen over RFB, one x11vnc per viewer, started on demand."""
        return {VNC_STREAM: self._vnc.open}

    def _on_screen(self, name: str, handler: ToolHandler) -> ToolHandler:
        """`handler` on a live X connection, once the window manager runs if it needs it."""
        managed = name not in _NO_WINDOW_MANAGER_NEEDED

        def run(params: Params) -> dict[str, Any]:
            self._screen.ensure_connected()
            if managed:
                self._screen.wait_until_managed()
            return handler(params)

        return run

    def close(self) -> None:
        """Stop the recorder, the tree reader, release held keys, stop programs, the
        window manager, Xvfb."""
        self._vnc.close()
        self._recorder.close()
        self._a11y.close()
        self._programs.close()
        self._screen.close()

    def wait(self, params: Params) -> dict[str, Any]:
        """``vm.wait``: `seconds` (0 to 30)."""
        seconds: float = params.raw()["seconds"]
        time.sleep(seconds)
        return {"waited": seconds}

    def done(self, params: Params) -> dict[str, Any]:
        """``vm.done``: record that the task is done."""
        self.status = {"status": "done"}
        return dict(self.status)

    def fail(self, params: Params) -> dict[str, Any]:
        """``vm.fail``: record that the task failed, with an optional `reason`."""
        self.status = {"status": "failed", "reason": params.optional_string("reason")}
        return dict(self.status)


def create_toolset(context: AgentContext) -> Toolset:
    """The factory the agent looks up in every toolset module.

    Raises:
        ConfigError: The desktop cannot start (its reason is in the message).
    """
    try:
        return DesktopToolset(context)
    except DesktopError as exc:
        raise ConfigError(f"cannot start the desktop: {exc}") from None
