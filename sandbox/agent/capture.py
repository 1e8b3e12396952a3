"""Reading a command's stdout and stderr: bounded, never blocking the writer.

Both pipes are read together until each is complete, so a command that fills
one pipe while we wait on the other cannot deadlock. Each stream keeps at most
`limit` bytes and drains (and drops) the rest, so a chatty command runs to its
end instead of blocking on a full pipe.

A stream is complete at end of file or, for the persistent shell whose pipes
never close, when it has seen its per-call sentinel (and the trailer fields the
shell prints after it): the output is exactly what preceded the sentinel.
"""

from __future__ import annotations

import enum
import os
import select
import time
from collections.abc import Callable

_READ_SIZE = 1 << 16
# Without a pidfd, a process's exit is noticed by polling this often.
_POLL_S = 0.05


class StreamCapture:
    """One output stream: the first `limit` bytes, a sentinel, and a trailer.

    Args:
        limit: Most bytes of output kept; the rest is counted as truncated.
        sentinel: Marks the end of the output, or None to read to end of file.
        trailer_fields: How many NUL-terminated fields follow the sentinel.
    """

    def __init__(self, limit: int, sentinel: bytes | None = None, trailer_fields: int = 0) -> None:
        self.limit = limit
        self.sentinel = sentinel
        self.trailer_fields = trailer_fields
        self.output = bytearray()
        self.truncated = False
        self.closed = False
        self.found = False
        self.trailer = bytearray()
        # Bytes that might be the start of a sentinel split across two reads.
        self._window = bytearray()

    @property
    def complete(self) -> bool:
        """Whether the output is final: end of file, or sentinel and trailer seen."""
        if self.sentinel is None:
            return self.closed
        return self.found and self.trailer.count(b"\0") >= self.trailer_fields

    def feed(self, chunk: bytes) -> None:
        """Take bytes read from the stream."""
        if self.found:
            self.trailer += chunk
            return
        if self.sentinel is None:
            self._keep(chunk)
            return
        self._window += chunk
        index = self._window.find(self.sentinel)
        if index >= 0:
            self._keep(self._window[:index])
            self.trailer += self._window[index + len(self.sentinel) :]
            self._window.clear()
            self.found = True
            return
        hold = len(self.sentinel) - 1
        if len(self._window) > hold:
            self._keep(self._window[: len(self._window) - hold])
            del self._window[: len(self._window) - hold]

    def flush(self) -> None:
        """Give up on the sentinel: bytes held back as its possible start are output."""
        self._keep(self._window)
        self._window.clear()

    def close(self) -> None:
        """Note end of file."""
        self.closed = True
        self.flush()

    def trailer_fields_text(self) -> list[str]:
        """The NUL-terminated fields after the sentinel, decoded."""
        fields = bytes(self.trailer).split(b"\0")[: self.trailer_fields]
        return [os.fsdecode(field) for field in fields]

    def text(self) -> str:
        """The kept output as text; undecodable bytes become U+FFFD."""
        return self.output.decode("utf-8", errors="replace")

    def _keep(self, data: bytes | bytearray) -> None:
        room = self.limit - len(self.output)
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        self.output += data


class Outcome(enum.Enum):
    """Why `OutputCollector.wait` returned."""

    COMPLETE = "complete"
    """Both streams are complete."""
    EXITED = "exited"
    """The process exited first."""
    CLOSED = "closed"
    """A stream reached end of file before its sentinel: it can never complete."""
    DEADLINE = "deadline"
    """Time ran out first."""


class OutputCollector:
    """Reads a process's stdout and stderr into two `StreamCapture`s.

    The collector never closes the pipes it reads (the persistent shell's outlive
    it) but stops watching one at end of file.

    Args:
        stdout_fd: The read end of the process's stdout pipe.
        stderr_fd: The read end of its stderr pipe.
        stdout: Where stdout goes.
        stderr: Where stderr goes.
        exit_fd: A pidfd of the process, readable once it exits, if available.
        has_exited: Polled instead of `exit_fd` when there is none.
    """

    def __init__(
        self,
        stdout_fd: int,
        stderr_fd: int,
        stdout: StreamCapture,
        stderr: StreamCapture,
        *,
        exit_fd: int | None,
        has_exited: Callable[[], bool],
    ) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.exited = False
        self._captures = {stdout_fd: stdout, stderr_fd: stderr}
        self._exit_fd = exit_fd
        self._has_exited = has_exited
        self._poll = select.poll()
        for fd in self._captures:
            self._poll.register(fd, select.POLLIN)
        if exit_fd is not None:
            self._poll.register(exit_fd, select.POLLIN)

    @property
    def complete(self) -> bool:
        """Whether both streams are complete."""
        return self.stdout.complete and self.stderr.complete

    @property
    def truncated(self) -> bool:
        """Whether either stream lost output to the limit."""
        return self.stdout.truncated or self.stderr.truncated

    def wait(self, deadline: float) -> Outcome:
        """Read until both streams are complete, the process exits, or `deadline`.

        `deadline` is on the `time.monotonic` clock. Once the process has exited,
        later calls read on until the streams are complete or the deadline.
        """
        watch_exit = not self.exited
        while True:
            if self.complete:
                return Outcome.COMPLETE
            if any(c.closed and not c.complete for c in self._captures.values()):
                return Outcome.CLOSED
            if watch_exit and self.exited:
                return Outcome.EXITED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Outcome.DEADLINE
            if watch_exit and self._exit_fd is None:
                remaining = min(remaining, _POLL_S)
            # Round up: a 0 ms poll for 0.4 ms left would spin.
            self._read_ready(max(1, int(remaining * 1000) + 1))
            if watch_exit and self._exit_fd is None and not self.exited:
                self.exited = self._has_exited()

    def wait_exit(self, deadline: float) -> bool:
        """Wait for the process to exit (reading on meanwhile); whether it did by `deadline`.

        With a pidfd the process is left unreaped, so its pid cannot be reused yet.
        """
        while not self.exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._exit_fd is None:
                self.exited = self._has_exited()
                if not self.exited:
                    time.sleep(min(remaining, _POLL_S))
            else:
                self._read_ready(max(1, int(remaining * 1000) + 1))
        return True

    def drain(self, seconds: float) -> None:
        """Read what the streams still hold after an exit or kill, for at most `seconds`.

        Stops early once each stream is complete or at end of file; it only runs
        the full time while something (an orphaned background job) holds a pipe open.
        """
        deadline = time.monotonic() + seconds
        while not all(c.complete or c.closed for c in self._captures.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._read_ready(max(1, int(remaining * 1000) + 1))

    def _read_ready(self, timeout_ms: int) -> None:
        for fd, _ in self._poll.poll(timeout_ms):
            if fd == self._exit_fd:
                self.exited = True
                self._poll.unregister(fd)
                continue
            capture = self._captures[fd]
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            if chunk:
                capture.feed(chunk)
            else:
                capture.close()
                self._poll.unregister(fd)
