"""Setup steps by OSWorld's names: launch, open, upload_file, download, execute
(command), sleep, activate_window, close_window, chrome_open_tabs,
chrome_close_tabs.

`run_steps` runs a list in order; the first that fails stops it and the error
names it (``steps.2``). A step's parameters are checked before it runs.
"""

from __future__ import annotations

import base64
import binascii
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParams, ToolError, ToolFailed, ToolTimeout
from ..tools.desktop_tasks import MAX_SETUP_S, MAX_UPLOAD_BYTES
from . import browser
from .fields import Fields
from .host import TaskHost, WindowAction
from .registry import Registry

DEFAULT_COMMAND_TIMEOUT_S = 120.0
MAX_SLEEP_S = 60.0
MAX_DOWNLOAD_BYTES = 256 << 20
"""Largest file a ``download`` step fetches (the session's disk quota binds too)."""
MAX_TABS = 50
"""Most tabs one ``chrome_open_tabs`` step opens."""
TABS_WAIT_S = 10.0
"""Longest ``chrome_close_tabs`` waits for Chromium to list the tabs to close."""
TABS_POLL_S = 0.5
MAX_STEP_OUTPUT_CHARS = 4000
"""Most characters of each output stream an ``execute`` step reports."""


@dataclass
class SetupRun:
    """What the steps of one call share: the host, the upload budget, the deadline."""

    host: TaskHost
    deadline: float
    upload_left: int = MAX_UPLOAD_BYTES

    def time_left(self) -> float:
        """Seconds before the whole setup must end."""
        return max(0.0, self.deadline - time.monotonic())


Step = Callable[[SetupRun, Fields], dict[str, Any]]
"""Runs one step with its parameters; returns what it did (for the caller)."""

STEPS = Registry[Step]("step type")
"""Every step type, by name."""


def run_steps(
    host: TaskHost, steps: Sequence[Any], where: str = "steps", timeout: float = MAX_SETUP_S
) -> list[dict[str, Any]]:
    """Run `steps` (``{"type", "parameters"}`` objects) in order.

    Returns:
        What each step did, in order.

    Raises:
        InvalidParams: A step is malformed or its parameters are (naming the field).
        ToolFailed: A step failed; the message names it and `data` says which.
        ToolTimeout: The steps ran past `timeout` (at most `MAX_SETUP_S`).
    """
    limit = min(timeout, MAX_SETUP_S)
    run = SetupRun(host, time.monotonic() + limit)
    # Every step is checked before the first runs: a typo in step 5 must not
    # leave the desktop half set up.
    parsed = [_parse(step, f"{where}.{index}") for index, step in enumerate(steps)]
    done: list[dict[str, Any]] = []
    for index, (kind, function, parameters) in enumerate(parsed):
        name = f"{where}.{index}"
        if run.time_left() <= 0:
            raise ToolTimeout(
                f"setup ran past {limit:g}s before {name} ({kind})", data={"done": done}
            )
        try:
            result = function(run, parameters)
        except InvalidParams:
            raise
        except ToolError as exc:
            exc.message = f"{name} ({kind}) failed: {exc.message}"
            exc.args = (exc.message,)
            exc.data = {**exc.data, "step": index, "type": kind, "done": done}
            raise
        done.append({"type": kind, **result})
    return done


def _parse(step: Any, where: str) -> tuple[str, Step, Fields]:
    fields = Fields(step, where)
    kind = fields.string("type")
    function = STEPS.get(kind, fields.at("type"))
    parameters = Fields(fields.raw.get("parameters"), fields.at("parameters"))
    _CHECKS.get(kind, _no_check)(parameters)
    return kind, function, parameters


def _no_check(parameters: Fields) -> object:
    return parameters


def _check_command(parameters: Fields) -> None:
    parameters.command()
    parameters.number("timeout", DEFAULT_COMMAND_TIMEOUT_S, maximum=MAX_SETUP_S)
    parameters.boolean("check", True)


def _check_window(parameters: Fields) -> None:
    parameters.string("window_name")
    parameters.boolean("strict", False)
    parameters.boolean("by_class", False)


def _check_upload(parameters: Fields) -> None:
    files = parameters.objects("files")
    total = 0
    for file in files:
        file.string("path")
        total += len(_decoded(file))
        if total > MAX_UPLOAD_BYTES:
            raise file.refuse(
                "content", f"brings the upload past {MAX_UPLOAD_BYTES >> 20} MiB per call"
            )


def _check_download(parameters: Fields) -> None:
    parameters.number("timeout", DEFAULT_COMMAND_TIMEOUT_S, maximum=MAX_SETUP_S)
    for file in parameters.objects("files"):
        file.string("path")
        url = file.string("url")
        if not url.startswith(("http://", "https://")):
            raise file.refuse("url", f"must be an http:// or https:// URL, not {url[:100]!r}")


def _urls(parameters: Fields, name: str = "urls_to_open") -> list[str]:
    urls = parameters.raw.get(name)
    if not isinstance(urls, list) or not urls or len(urls) > MAX_TABS:
        raise parameters.refuse(name, f"must be a list of 1 to {MAX_TABS} URLs")
    for index, url in enumerate(urls):
        if not isinstance(url, str) or not url.strip() or url.startswith("-"):
            raise parameters.refuse(f"{name}.{index}", "must be a URL")
    return urls


_CHECKS: dict[str, Callable[[Fields], object]] = {
    "launch": lambda parameters: parameters.command(),
    "open": lambda parameters: parameters.string("path"),
    "upload_file": _check_upload,
    "download": _check_download,
    "execute": _check_command,
    "command": _check_command,
    "sleep": lambda parameters: parameters.number("seconds", maximum=MAX_SLEEP_S),
    "activate_window": _check_window,
    "close_window": _check_window,
    "chrome_open_tabs": _urls,
    "chrome_close_tabs": lambda parameters: _urls(parameters, "urls_to_close"),
}


def _decoded(file: Fields) -> bytes:
    content = file.string("content")
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise file.refuse("content", f"is not valid base64: {exc}") from None


@STEPS.register("launch")
def launch(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Start a program in the background (``command``: a line or an argument list)."""
    return run.host.launch(parameters.command())


@STEPS.register("open")
def open_file(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Open ``path`` with its desktop program: xdg-open where the image has it, else
    xedit (the stock image has no file associations; xedit shows any text file)."""
    path = parameters.string("path")
    quoted = shlex.quote(path)
    check = run.host.run(f"test -e {quoted}", min(10.0, run.time_left()))
    if check.exit_code != 0:
        raise ToolFailed(f"cannot open {path}: no such file")
    command = (
        f"if command -v xdg-open >/dev/null; then exec xdg-open {quoted}; "
        f"else exec xedit {quoted}; fi"
    )
    return {"path": path, **run.host.launch(command)}


@STEPS.register("upload_file")
def upload_file(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Write ``files`` ([{path, content (base64)}]) as the session user."""
    written = []
    for file in parameters.objects("files"):
        data = _decoded(file)
        if len(data) > run.upload_left:
            raise file.refuse(
                "content", f"brings the upload past {MAX_UPLOAD_BYTES >> 20} MiB per call"
            )
        run.upload_left -= len(data)
        path = file.string("path")
        run.host.write_file(path, data)
        written.append({"path": path, "size": len(data)})
    return {"files": written}


# Fetches argv[1] into argv[2] as the session user (its network, its files), at
# most argv[3] bytes, into a temporary name first: a failed download leaves nothing.
_DOWNLOAD = r"""
import os, sys, urllib.request
url, path = sys.argv[1], os.path.expanduser(sys.argv[2])
limit, timeout = int(sys.argv[3]), float(sys.argv[4])
part = path + ".part"
try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as answer, open(part, "wb") as out:
        size = 0
        while chunk := answer.read(1 << 16):
            size += len(chunk)
            if size > limit:
                raise OSError(f"it is larger than {limit >> 20} MiB")
            out.write(chunk)
    os.replace(part, path)
except Exception as exc:
    if os.path.exists(part):
        os.unlink(part)
    sys.exit(f"cannot download {url[:200]}: {exc}")
print(size)
"""


@STEPS.register("download")
def download(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Fetch ``files`` ([{url, path}]) over the session's network as the session user;
    a session without network fails here, saying the URL could not be reached."""
    timeout = parameters.number("timeout", DEFAULT_COMMAND_TIMEOUT_S, maximum=MAX_SETUP_S)
    fetched = []
    for file in parameters.objects("files"):
        url, path = file.string("url"), file.string("path")
        left = min(timeout, run.time_left())
        argv = ["python3", "-I", "-c", _DOWNLOAD, url, path, str(MAX_DOWNLOAD_BYTES), f"{left:g}"]
        output = run.host.run(shlex.join(argv), left + 5)
        if output.exit_code != 0:
            reason = output.stderr.strip().splitlines()
            raise ToolFailed(reason[-1][:500] if reason else f"cannot download {url[:200]}")
        size = output.stdout.strip()
        fetched.append({"url": url, "path": path, "size": int(size) if size.isdigit() else None})
    return {"files": fetched}


@STEPS.register("chrome_open_tabs")
def chrome_open_tabs(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Open ``urls_to_open`` as tabs of Chromium (started if it is not running; its
    DevTools port then serves the page getters)."""
    urls = _urls(parameters)
    return {"urls": urls, **run.host.launch(shlex.join(["chromium", *urls]))}


@STEPS.register("chrome_close_tabs")
def chrome_close_tabs(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Close, for each of ``urls_to_close``, the first Chromium tab showing it (URLs
    compared as OSWorld does: `browser.same_url`). Waits up to 10 s for Chromium
    (launched by a step before) to list them; a URL no tab shows is reported in
    ``not_open``. No Chromium at all fails the step."""
    urls = _urls(parameters, "urls_to_close")
    deadline = time.monotonic() + min(TABS_WAIT_S, run.time_left())
    while True:
        tabs = run.host.browser_tabs()
        listed = tabs is not None and all(
            any(browser.same_url(tab.url, url) for tab in tabs) for url in urls
        )
        if listed or time.monotonic() >= deadline:
            break
        run.host.sleep(TABS_POLL_S)
    if tabs is None:
        raise ToolFailed("Chromium is not running: nothing answers on its DevTools port")
    left, closed, not_open = list(tabs), [], []
    for url in urls:
        tab = next((tab for tab in left if browser.same_url(tab.url, url)), None)
        if tab is None:
            not_open.append(url)
            continue
        run.host.close_tab(tab)
        left.remove(tab)
        closed.append(tab.url)
    return {"closed": closed, "not_open": not_open}


@STEPS.register("execute", "command")
def execute(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Run ``command`` and wait; a non-zero exit fails the step unless ``check`` is false."""
    timeout = min(
        parameters.number("timeout", DEFAULT_COMMAND_TIMEOUT_S, maximum=MAX_SETUP_S),
        run.time_left(),
    )
    output = run.host.run(parameters.command(), timeout)
    # The ends of the streams: a hundred chatty steps must not swamp the answer.
    data = {
        "stdout": output.stdout[-MAX_STEP_OUTPUT_CHARS:],
        "stderr": output.stderr[-MAX_STEP_OUTPUT_CHARS:],
        "exit_code": output.exit_code,
    }
    if output.exit_code != 0 and parameters.boolean("check", True):
        raise ToolFailed(f"the command exited with status {output.exit_code}", data=data)
    return data


@STEPS.register("sleep")
def sleep(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Wait ``seconds`` (at most a minute)."""
    seconds = min(parameters.number("seconds", maximum=MAX_SLEEP_S), run.time_left())
    run.host.sleep(seconds)
    return {"slept": seconds}


@STEPS.register("activate_window")
def activate_window(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Give the focus to the window named ``window_name``."""
    return _window(run, parameters, "activate")


@STEPS.register("close_window")
def close_window(run: SetupRun, parameters: Fields) -> dict[str, Any]:
    """Ask the windows named ``window_name`` to close."""
    return _window(run, parameters, "close")


def _window(run: SetupRun, parameters: Fields, action: WindowAction) -> dict[str, Any]:
    name = parameters.string("window_name")
    strict = parameters.boolean("strict", False)
    by_class = parameters.boolean("by_class", False)
    matched = run.host.windows(action, name, strict=strict, by_class=by_class)
    if not matched:
        what = "class" if by_class else "title"
        how = "equal to" if strict else "containing"
        raise ToolFailed(f"no window with a {what} {how} {name!r}")
    return {"windows": matched}
