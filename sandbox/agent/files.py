"""Reading and writing files for the session, with the session user's file rights.

Shared by the file tools of every toolset (``bash.read_file``/``write_file``,
``vm.upload_file``/``download_file``), so all of them keep the same rules:

- Every open happens inside `acting_as`: a symlink the session planted cannot
  lead the (root) agent where the session user could not go.
- Opens are non-blocking, so a FIFO the session planted cannot hang the call;
  only regular files are written, regular files and character devices read.
- The agent's own ``/proc`` entries (``/proc/self``, ``/proc/<agent pid>``) are
  refused, since procfs shows a process its own entries whoever asks.

Every refusal is an ``invalid_params`` error naming the tool's `field` (``path``
unless the tool names it otherwise).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import stat

from .errors import InvalidParams
from .identity import SessionUser, acting_as

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_READ_CHUNK = 1 << 20


def resolve_path(path: str, *, home: str, cwd: str) -> str:
    """`path` made absolute: ``~`` is `home`, a relative path is relative to `cwd`."""
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    return os.path.abspath(os.path.join(cwd, path))


def decode_base64(content: str, field: str) -> bytes:
    """The bytes `content` encodes; wrapped base64 (as ``base64`` prints it) is fine too.

    Raises:
        InvalidParams: Not valid base64 (1002 naming `field`).
    """
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParams(f"{field} is not valid base64: {exc}", field=field) from None


def write_file(path: str, data: bytes, user: SessionUser | None, *, field: str = "path") -> None:
    """Write `data` to the absolute `path`, creating missing parent directories.

    Raises:
        InvalidParams: The session user may not write there, or it is not a
            regular file (a directory, a FIFO, the agent's /proc).
    """
    try:
        # With the session user's rights: a symlink it planted cannot lead
        # the agent to write where the user could not.
        with acting_as(user):
            _refuse_agent_proc(path, "write", field)
            _make_parents(path)
            # Non-blocking: opening a FIFO the session planted would wait
            # for a reader forever (or fail at once with ENXIO, as here).
            fd = os.open(path, _WRITE_FLAGS, 0o666)
    except OSError as exc:
        # ENXIO: a FIFO nobody reads, which a non-blocking open refuses.
        reason = "not a regular file" if exc.errno == errno.ENXIO else _reason(exc)
        raise InvalidParams(f"cannot write {path}: {reason}", field=field) from None
    try:
        _check_opened(fd, path, "write", field, allow_devices=False)
        os.set_blocking(fd, True)
        with open(fd, "wb", closefd=False) as file:
            file.write(data)
    except OSError as exc:
        raise InvalidParams(f"cannot write {path}: {_reason(exc)}", field=field) from None
    finally:
        os.close(fd)


def read_file(
    path: str, limit: int, user: SessionUser | None, *, field: str = "path"
) -> tuple[bytes, int]:
    """Up to `limit` + 1 bytes of the absolute `path` (one more tells it is longer),
    and the file's size (0 for /proc and device files, which do not know it).

    Raises:
        InvalidParams: The session user may not read it, or it is a directory,
            FIFO, socket or the agent's /proc entry.
    """
    try:
        # Non-blocking, so a FIFO cannot hang the call; it is refused below.
        with acting_as(user):
            _refuse_agent_proc(path, "read", field)
            fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise InvalidParams(f"cannot read {path}: {_reason(exc)}", field=field) from None
    try:
        info = _check_opened(fd, path, "read", field, allow_devices=True)
        chunks: list[bytes] = []
        wanted = limit + 1
        while wanted > 0:
            try:
                chunk = os.read(fd, min(wanted, _READ_CHUNK))
            except BlockingIOError:
                break
            except OSError as exc:
                raise InvalidParams(f"cannot read {path}: {_reason(exc)}", field=field) from None
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        size = info.st_size if stat.S_ISREG(info.st_mode) else 0
        return b"".join(chunks), size
    finally:
        os.close(fd)


def _agent_proc_dirs() -> set[str]:
    """``/proc/<id>`` of the agent's process and of each of its threads."""
    pid = str(os.getpid())
    try:
        threads = set(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        threads = set()
    return {f"/proc/{task}" for task in threads | {pid}}


def _is_agent_proc(path: str, agent: set[str]) -> bool:
    parts = path.split("/", 3)
    return len(parts) >= 3 and "/".join(parts[:3]) in agent


def _refuse_agent_proc(path: str, verb: str, field: str) -> None:
    """Refuse the agent's own /proc entries (its memory map, its descriptors...).

    The file tools open as the agent process with the session user's file rights,
    and procfs lets a process read its own entries whoever asks: /proc/self,
    /proc/thread-self and /proc/<agent pid> would show the root agent, not the
    session. Checked on the path with its symlinks resolved (a link the session
    planted counts), and on its directory.

    Raises:
        InvalidParams: `path` leads into the agent's /proc entries (1002, `field`).
    """
    agent = _agent_proc_dirs()
    # The directory too: /proc/self/fd/N resolves out of /proc, to the target.
    for resolved in (os.path.realpath(path), os.path.realpath(os.path.dirname(path))):
        if _is_agent_proc(resolved, agent):
            raise InvalidParams(f"cannot {verb} {path}: Permission denied", field=field)


def _check_opened(
    fd: int, path: str, verb: str, field: str, *, allow_devices: bool
) -> os.stat_result:
    """`fd`'s status once it is a regular file (or, reading, a character device).

    Also refuses a descriptor that turned out to be the agent's /proc entry (the
    path changed between the check and the open).

    Raises:
        InvalidParams: A directory, FIFO, socket or the agent's /proc (1002, `field`).
    """
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise InvalidParams(f"cannot {verb} {path}: Is a directory", field=field)
    allowed = stat.S_ISREG(info.st_mode) or (allow_devices and stat.S_ISCHR(info.st_mode))
    if not allowed:
        raise InvalidParams(f"cannot {verb} {path}: not a regular file", field=field)
    with contextlib.suppress(OSError):
        if _is_agent_proc(os.readlink(f"/proc/self/fd/{fd}"), _agent_proc_dirs()):
            raise InvalidParams(f"cannot {verb} {path}: Permission denied", field=field)
    return info


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _make_parents(path: str) -> None:
    """Create the missing parent directories of `path`, top down.

    A loop rather than `os.makedirs`, which recurses once per missing level and
    so fails with RecursionError on a path of a thousand levels (still within
    PATH_MAX).
    """
    missing = []
    parent = os.path.dirname(path)
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
        if parent == missing[-1]:
            break
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
