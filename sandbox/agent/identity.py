"""The session user: who everything the agent starts runs as, and whose file rights it uses.

In the images the agent runs as root with a few capabilities (SETUID, SETGID to
become the session user, KILL to signal the session's processes), and every
command, program and application runs as the unprivileged ``sandbox`` user
(uid 1000): after ``setuid`` to a non-root uid the kernel clears every
capability, so the session's processes hold none. File tools act with the same
rights through the calling thread's filesystem uid (``setfsuid``), so a symlink
the user planted leads nowhere the user could not go anyway.

The images name the session user in ``SANDBOX_AGENT_USER``. An agent started
without it, or as a non-root user (tests, a developer's machine, the rag
service), has nobody to become: `SessionUser.current` then returns None and
every helper here does nothing.

Each session has a uid of its own. Containers without a user namespace share
the host's per-uid kernel accounting: inotify instances and watches, POSIX
message-queue bytes, the user keyring (readable by every process of the uid,
where seccomp allows keyctl). Were every session uid 1000, one session could
use up another's inotify instances or read its keys. The server therefore
hands each session container a uid from `SESSION_UIDS` in
``SANDBOX_AGENT_UID``, distinct among its live containers; the images name
every uid of the range ``sandbox`` (`append_session_users`, run at build), so
``whoami``, ``ls -l`` and the shell prompt read as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SESSION_USER_ENV = "SANDBOX_AGENT_USER"
"""Name of the user a root agent runs the session's work as (``sandbox`` in the images)."""
SESSION_UID_ENV = "SANDBOX_AGENT_UID"
"""The session's own uid (and gid), set by the server per container; without
it the named user's uid from the image (1000)."""
SESSION_UIDS = range(1_000_000_000, 1_000_000_000 + 4096)
"""The uids the server gives sessions: far above the ranges distributions give
their users (1000-60000) and those users' subordinate ids (from 100000, 65536
each), below 2**31 for tools that keep uids in a signed int."""
AGENT_ENV_PREFIX = "SANDBOX_AGENT_"
"""The agent's own settings: never passed on to the session's processes."""


@dataclass(frozen=True)
class SessionUser:
    """The unprivileged user a root agent runs the session's work as."""

    uid: int
    gid: int
    name: str
    home: str

    @classmethod
    def current(cls, environ: Mapping[str, str]) -> SessionUser | None:
        """The user named by ``SANDBOX_AGENT_USER``; None when unnamed or not root.

        Raises:
            LookupError: The named user does not exist or is root (refusing to run
                the session's work with the agent's rights instead).
        """
        name = environ.get(SESSION_USER_ENV, "").strip()
        if not name or os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise LookupError(f"the session user {name!r} does not exist") from None
        if entry.pw_uid == 0:
            raise LookupError(f"the session user {name!r} is root")
        uid = environ.get(SESSION_UID_ENV, "").strip()
        if not uid:
            return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)
        if not uid.isdigit() or int(uid) not in SESSION_UIDS:
            raise LookupError(
                f"{SESSION_UID_ENV}={uid[:20]!r} is not a session uid "
                f"({SESSION_UIDS.start}-{SESSION_UIDS.stop - 1})"
            )
        return cls(int(uid), int(uid), entry.pw_name, entry.pw_dir)

    def popen_kwargs(self) -> dict[str, Any]:
        """`subprocess.Popen` arguments that start the child as this user, no extra groups."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def argv_prefix(self) -> list[str]:
        """A command prefix (util-linux ``setpriv``) that runs the rest as this user.

        For ``posix_spawn``, which cannot change the user itself.
        """
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """`environ` as this user's processes get it: their own HOME, USER and LOGNAME."""
        env = dict(environ)
        env.update(HOME=self.home, USER=self.name, LOGNAME=self.name)
        return env


def append_session_users(name: str, etc: str = "/etc") -> int:
    """Name every uid of `SESSION_UIDS` `name` in `etc`'s passwd and group files.

    Run once at image build, after `name` (uid 1000) was created: each session
    uid gets a passwd line (``name``'s home and shell) and a group of its own,
    so ``whoami`` and ``ls -l`` name the session user whatever its uid. Returns
    how many were added (none when they are there already).
    """
    passwd, group = os.path.join(etc, "passwd"), os.path.join(etc, "group")
    with open(passwd, encoding="utf-8") as lines:
        entries = [line.rstrip("\n").split(":") for line in lines if line.strip()]
    user = next((entry for entry in entries if entry[0] == name), None)
    if user is None:
        raise LookupError(f"no user {name!r} in {passwd}")
    known = {int(entry[2]) for entry in entries if entry[2].isdigit()}
    new = [uid for uid in SESSION_UIDS if uid not in known]
    home, shell = user[5], user[6]
    with open(passwd, "a", encoding="utf-8") as out:
        out.writelines(f"{name}:x:{uid}:{uid}::{home}:{shell}\n" for uid in new)
    with open(group, "a", encoding="utf-8") as out:
        out.writelines(f"{name}:x:{uid}:\n" for uid in new)
    return len(new)


def session_environment(environ: Mapping[str, str], user: SessionUser | None) -> dict[str, str]:
    """The environment of the session's processes: the agent's own settings removed."""
    env = {key: value for key, value in environ.items() if not key.startswith(AGENT_ENV_PREFIX)}
    return user.environment(env) if user is not None else env


def popen_kwargs(user: SessionUser | None) -> dict[str, Any]:
    """`SessionUser.popen_kwargs`, or nothing when there is no one to become."""
    return user.popen_kwargs() if user is not None else {}


def argv_as(user: SessionUser | None, argv: list[str]) -> list[str]:
    """`argv` run as `user` (unchanged without one)."""
    return [*user.argv_prefix(), *argv] if user is not None else list(argv)


def drop_supplementary_groups() -> None:
    """Leave root's supplementary groups (disk, adm, ...): the agent needs none.

    Called once at start, before any thread: it also keeps those groups out of
    the file checks `acting_as` makes with the session user's uid and gid.
    """
    if os.geteuid() == 0:
        os.setgroups([])


_libc: Any = None


def _c_library() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


@contextlib.contextmanager
def acting_as(user: SessionUser | None) -> Iterator[None]:
    """File operations of this thread, inside the block, use `user`'s rights.

    Linux keeps the filesystem uid and gid per thread, so other requests the
    agent serves meanwhile keep its own. Files created inside belong to `user`.

    Raises:
        PermissionError: The kernel refused the switch (the agent lacks SETUID/SETGID).
    """
    if user is None:
        yield
        return
    libc = _c_library()
    old_gid = libc.setfsgid(user.gid)
    old_uid = libc.setfsuid(user.uid)
    try:
        # setfsuid reports no error; asking again (-1 changes nothing) tells.
        if libc.setfsuid(-1) != user.uid or libc.setfsgid(-1) != user.gid:
            raise PermissionError("cannot take the session user's file rights")
        yield
    finally:
        libc.setfsuid(old_uid)
        libc.setfsgid(old_gid)


OOM_FIRST = 1000
"""The session's processes' ``oom_score_adj``: past its memory limit the kernel
kills them before the agent (raising one's own score needs no capability)."""


def prefer_for_oom(pid: int, user: SessionUser | None) -> None:
    """Make `pid`, a session process just started, the OOM killer's first pick.

    Written with `user`'s file rights (the file is the process's, and the
    agent has no CAP_DAC_OVERRIDE); its children inherit the score. Best
    effort: a process already gone has nothing to protect against.
    """
    with acting_as(user), contextlib.suppress(OSError):
        fd = os.open(f"/proc/{pid}/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(OOM_FIRST).encode())
        finally:
            os.close(fd)


SHARED_TMP_LINKS = ("/tmp", "/var/tmp")
"""In the images, symlinks into the disk quota's tmpfs (see `prepare_writable_dirs`)."""


def prepare_writable_dirs(user: SessionUser | None) -> None:
    """Create the directories the session writes in, inside its one disk-quota tmpfs.

    The images make ``/tmp`` and ``/var/tmp`` symlinks into the tmpfs that also
    holds the home, so a single quota covers all three. Their targets are made
    here, root's and 1777 like any /tmp (the tmpfs root is sticky: the user can
    rename neither); the home is made with the user's file rights, since the
    agent cannot chown. Anything already there is kept (an image run without
    the tmpfs, a second start). `desktop.early` makes the temporary directories
    too, before it starts Xvfb.
    """
    if user is None:
        return
    for link in SHARED_TMP_LINKS:
        if os.path.islink(link):
            target = os.path.join(os.path.dirname(link), os.readlink(link))
            with contextlib.suppress(FileExistsError):
                os.mkdir(target, 0o1777)
                os.chmod(target, 0o1777)  # whatever the umask
    if not os.path.isdir(user.home):
        with acting_as(user), contextlib.suppress(FileExistsError):
            os.mkdir(user.home, 0o755)


HOME_TEMPLATE_ENV = "SANDBOX_AGENT_HOME_TEMPLATE"
"""A directory whose content a root agent copies into the session user's (empty) home."""


def populate_home(user: SessionUser | None, template: str | None) -> int:
    """Copy `template`'s files into `user`'s home, as the user; returns how many.

    The sessions' homes are fresh tmpfs mounts (the disk quota), so the image's
    dotfiles reach them this way. Files already there are kept.
    """
    if user is None or not template or not os.path.isdir(template):
        return 0
    copied = 0
    with acting_as(user):
        for root, directories, files in os.walk(template):
            target = os.path.join(user.home, os.path.relpath(root, template))
            for name in directories:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(os.path.join(target, name), 0o755)
            for name in files:
                destination = os.path.join(target, name)
                if not os.path.lexists(destination):
                    shutil.copyfile(os.path.join(root, name), destination)
                    copied += 1
    return copied
