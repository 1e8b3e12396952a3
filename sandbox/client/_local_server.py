"""A server process started on this machine by ``Sandbox(auto_start_server=True)``.

Only a server on a loopback address is ever started, only when nothing answers
there, and only a process started here is ever stopped.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from sandbox.errors import SandboxConnectionError

logger = logging.getLogger("sandbox.client")

LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
READY_TIMEOUT_S: Final = 60.0
"""How long a started server may take to answer /health."""
STOP_GRACE_S: Final = 30.0
"""How long a server may take after SIGTERM (it destroys its session containers)."""
POLL_INTERVAL_S: Final = 0.25
LOG_TAIL_LINES: Final = 40


def is_local_url(url: str) -> bool:
    """Whether `url` names this machine (127.0.0.1, localhost or ::1)."""
    return (urlsplit(url).hostname or "") in LOCAL_HOSTS


def connection_refused(error: SandboxConnectionError) -> bool:
    """Whether `error` means nothing listened, rather than a broken answer."""
    return bool(error.data.get("connect_failed"))


def serve_command(url: str, config_file: str | Path | None = None) -> list[str]:
    """The command line that serves the API at `url`'s host and port.

    Args:
        url: The server URL the client will use.
        config_file: Profile file passed as ``--config``.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    command = [sys.executable, "-m", "sandbox", "serve"]
    command += ["--host", parts.hostname or "127.0.0.1", "--port", str(port)]
    if config_file is not None:
        command += ["--config", str(config_file)]
    return command


class LocalServer:
    """A server process started by this client, its output going to a log file.

    Use `spawn` to start one, then `wait_ready` (or `wait_ready_sync`), and `stop`
    (or `stop_sync`) when done.
    """

    def __init__(self, process: subprocess.Popen[bytes], command: Sequence[str], log: Path):
        self._process = process
        self._command = list(command)
        self._log = log

    @classmethod
    def spawn(cls, command: Sequence[str]) -> LocalServer:
        """Start `command` with stdout and stderr going to a log in a temp dir."""
        log = Path(tempfile.mkdtemp(prefix="sandbox-server-")) / "server.log"
        try:
            with log.open("wb") as out:
                process = subprocess.Popen(
                    list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
        except OSError:
            shutil.rmtree(log.parent, ignore_errors=True)
            raise
        logger.info("started sandbox server (pid %d), log at %s", process.pid, log)
        return cls(process, command, log)

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self._process.pid

    @property
    def log_path(self) -> Path:
        """File holding the server's stdout and stderr."""
        return self._log

    @property
    def returncode(self) -> int | None:
        """Exit code, or ``None`` while the process runs."""
        return self._process.poll()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the server's output."""
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- waiting until it answers --------------------------------------------

    def wait_ready_sync(
        self,
        probe: Callable[[], object],
        *,
        timeout_s: float = READY_TIMEOUT_S,
        interval_s: float = POLL_INTERVAL_S,
    ) -> bool:
        """Blocking twin of `wait_ready`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                probe()
            except SandboxConnectionError as error:
                self._raise_if_hopeless(error, deadline, timeout_s)
                time.sleep(interval_s)
            else:
                return self._answered()

    async def wait_ready(
        self,
        probe: Callable[[], Awaitable[object]],
        *,
        timeout_s: float = READY_TIMEOUT_S,
        interval_s: float = POLL_INTERVAL_S,
    ) -> bool:
        """Call `probe` until it stops raising `SandboxConnectionError`.

        Args:
            probe: One /health request that raises when nothing answers.
            timeout_s: How long the server may take.
            interval_s: Pause between probes.

        Returns:
            ``True`` when this process answered; ``False`` when it exited while
            another server answered on the same port (a concurrent start won),
            which is then not ours to stop.

        Raises:
            SandboxConnectionError: The process exited without anything answering,
                or it did not answer in time (it is then killed). The message holds
                the last lines of its log.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await probe()
            except SandboxConnectionError as error:
                self._raise_if_hopeless(error, deadline, timeout_s)
                await asyncio.sleep(interval_s)
            else:
                return self._answered()

    def _answered(self) -> bool:
        if self._process.poll() is None:
            return True
        logger.info("another sandbox server answered; pid %d exited", self._process.pid)
        self._remove_log()
        return False

    def _raise_if_hopeless(
        self, error: SandboxConnectionError, deadline: float, timeout_s: float
    ) -> None:
        code = self._process.poll()
        if code is not None:
            raise self._failure(f"exited with code {code} before answering", error)
        if time.monotonic() >= deadline:
            self.kill()
            raise self._failure(f"did not answer within {timeout_s:g} s and was killed", error)

    def _failure(self, what: str, error: SandboxConnectionError) -> SandboxConnectionError:
        # The log is kept for a look after the failure; its path is in the message.
        tail = self.log_tail()
        return SandboxConnectionError(
            f"sandbox server (pid {self._process.pid}: {' '.join(self._command)}) {what}. "
            f"Last probe: {error.message}\n--- last lines of {self._log} ---\n{tail}",
            data={"log_path": str(self._log), "log_tail": tail, "returncode": self.returncode},
        )

    # -- stopping ------------------------------------------------------------

    def kill(self) -> None:
        """Kill the process at once, if it still runs."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop_sync(self, grace_s: float = STOP_GRACE_S) -> None:
        """Blocking twin of `stop`."""
        if self._terminate():
            try:
                self._process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._finish()

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Send SIGTERM, wait up to `grace_s` for a clean exit, then kill.

        The log file goes with it.
        """
        if self._terminate():
            deadline = time.monotonic() + grace_s
            while self._process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(POLL_INTERVAL_S / 2)
            self.kill()
        self._finish()

    def _terminate(self) -> bool:
        if self._process.poll() is not None:
            return False
        logger.info("stopping sandbox server (pid %d)", self._process.pid)
        self._process.send_signal(signal.SIGTERM)
        return True

    def _finish(self) -> None:
        code = self._process.poll()
        if code not in (0, -signal.SIGTERM):
            logger.warning(
                "sandbox server (pid %d) ended with code %s; last output:\n%s",
                self._process.pid,
                code,
                self.log_tail(),
            )
        self._remove_log()

    def _remove_log(self) -> None:
        shutil.rmtree(self._log.parent, ignore_errors=True)
