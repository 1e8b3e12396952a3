"""Entry point of the server image: drop root, then run ``sandbox ARGS...``.

The container starts as root only to look at the mounted Docker socket and at the
socket directory on the host, then becomes the unprivileged ``sandbox`` user:

- The user joins the group that owns the Docker socket (its gid differs from host
  to host, so it is read here rather than fixed in the image or the compose file).
  A socket that only root may use leaves the server running as root, said in the log.
- ``socket_dir`` (a host directory mounted at the same path) and the server's own
  directory under it are created and handed to that user, since the host's copy
  of ``socket_dir`` is usually root's.

Started as any other user (``docker run --user``, compose ``user:``), it changes
nothing and runs the command as that user.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

SERVICE_USER = "sandbox"
COMMAND = "/opt/sandbox/venv/bin/sandbox"


def say(message: str) -> None:
    print(f"entrypoint: {message}", file=sys.stderr, flush=True)


def docker_socket() -> Path | None:
    """The Unix socket the Docker SDK will use (None for a TCP ``DOCKER_HOST``)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    return Path(host.removeprefix("unix://"))


def groups_for_socket(socket: Path | None) -> list[int] | None:
    """Supplementary groups that let a non-root user use `socket`; None: only root can."""
    if socket is None:
        return []
    try:
        info = socket.stat()
    except OSError:
        say(f"{socket} is not there: mount the Docker socket (the server reports it)")
        return []
    if info.st_mode & 0o006 == 0o006:
        return []
    if info.st_mode & 0o060 == 0o060:
        return [info.st_gid]
    return None


def prepare_socket_dir(uid: int, gid: int) -> None:
    """Create this server's socket directory and give it (and what is in it) to uid."""
    try:
        from sandbox.config import Settings
        from sandbox.runtime.sockets import SocketDirs

        settings = Settings()
    except Exception as exc:  # the server itself reports bad settings, with details
        say(f"settings not readable yet ({type(exc).__name__}); socket directory left alone")
        return
    base = SocketDirs(settings.socket_dir, settings.server_id).base
    base.mkdir(parents=True, exist_ok=True)
    # The server also keeps files of its own beside its directory (its claim
    # key): the socket root must be its to write in, not root's.
    if settings.socket_dir.stat().st_uid != uid:
        os.chown(settings.socket_dir, uid, gid)
    if base.stat().st_uid != uid:
        os.chown(base, uid, gid)
    os.chmod(base, 0o700)
    # Directories of agents left by a run as root become what the unprivileged
    # server makes: its own, open inside (the agents are capability-less roots).
    # Then it can reach the agents it adopts and remove them.
    for child in base.iterdir():
        if child.is_dir() and child.stat().st_uid != uid:
            os.chown(child, uid, gid)
            os.chmod(child, 0o777)


def main(args: list[str]) -> None:
    command = [COMMAND, *(args or ["serve"])]
    if os.geteuid() != 0:
        os.execv(command[0], command)
    user = pwd.getpwnam(SERVICE_USER)
    socket = docker_socket()
    groups = groups_for_socket(socket)
    if groups is None:
        say(f"{socket} is usable by root only: the server runs as root")
        os.execv(command[0], command)
    prepare_socket_dir(user.pw_uid, user.pw_gid)
    os.setgroups(groups)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
