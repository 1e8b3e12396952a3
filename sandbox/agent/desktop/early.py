"""Start Xvfb before the agent loads: the desktop image's entry point.

Python needs ~0.15 s to import the agent, and Xvfb ~0.08 s to come up; run one
after the other they both delay every new session. The image therefore runs
this file first (``python3 -I -S .../early.py``: no site, no imports beyond
``os`` and ``sys``): it spawns Xvfb, then replaces itself with the agent
(``execv``, same process), which finds Xvfb's pid and the read end of its
``-displayfd`` pipe in ``SANDBOX_DESKTOP_XVFB`` and adopts it as its child.

Run as a script, so it imports nothing of its package; `session` imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

XVFB_ENV = "SANDBOX_DESKTOP_XVFB"
"""``<pid>:<fd>`` of an Xvfb started before the agent, for the agent to adopt."""
TOKEN_ENV = "SANDBOX_AGENT_TOKEN"
_AGENT = "SANDBOX_AGENT_"
USER_ENV = "SANDBOX_AGENT_USER"
"""The session user a root agent runs Xvfb (and everything else) as; see `identity`."""
UID_ENV = "SANDBOX_AGENT_UID"
"""The session's own uid, as `identity.SESSION_UID_ENV` (which checks its range)."""


def xvfb_command(display: str, width: int, height: int, displayfd: int) -> list[str]:
    """Xvfb's command line: no TCP, no reset when clients leave, and no GLX.

    GLX would load Mesa's software renderer, which triples Xvfb's memory
    (~15 MB -> ~60 MB) for programs that a light desktop does not run.
    """
    return [
        "Xvfb",
        display,
        "-screen",
        "0",
        f"{width}x{height}x24",
        "-nolisten",
        "tcp",
        "-noreset",
        "-extension",
        "GLX",
        "-dpi",
        "96",
        "-displayfd",
        str(displayfd),
    ]


def spawn(argv: Sequence[str], env: Mapping[str, str], *, keep_fd: int | None = None) -> int:
    """Start `argv` in its own session, stdin and stdout on /dev/null; returns its pid.

    `keep_fd` stays open in the child under its number (``-displayfd``).
    """
    if keep_fd is not None:
        os.set_inheritable(keep_fd, True)
    try:
        return os.posix_spawnp(
            argv[0],
            list(argv),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            ],
            setsid=True,
        )
    finally:
        if keep_fd is not None:
            os.set_inheritable(keep_fd, False)


def spawn_xvfb(
    display: str,
    width: int,
    height: int,
    env: Mapping[str, str],
    *,
    prefix: Sequence[str] = (),
) -> tuple[int, int]:
    """Start Xvfb; returns its pid and the pipe it writes its display number to when ready.

    `prefix` goes before Xvfb's command line (``setpriv`` to run it as the session user).
    """
    read_fd, write_fd = os.pipe()
    try:
        argv = [*prefix, *xvfb_command(display, width, height, write_fd)]
        pid = spawn(argv, env, keep_fd=write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return pid, read_fd


def _agent_main() -> str:
    """The program the image's CMD would otherwise run: the agent from its directory."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root, package = os.path.split(package_dir)
    return (
        f"import sys; sys.path.insert(0, {root!r}); "
        f"from {package}.cli import main; sys.exit(main())"
    )


def session_user_prefix() -> list[str]:
    """``setpriv`` to the session user for a root agent (as `identity` does); else nothing.

    An unknown user or a malformed uid gives nothing here: the agent then
    refuses to start, and the Xvfb started here dies with it.
    """
    name = os.environ.get(USER_ENV, "").strip()
    if not name or os.geteuid() != 0:
        return []
    uid = os.environ.get(UID_ENV, "").strip()
    if uid:
        if not uid.isdigit():
            return []
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    import pwd  # built into the interpreter: no file to load

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return []
    return [
        "setpriv",
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--clear-groups",
        "--",
    ]


def _make_socket_directory() -> None:
    """Root's /tmp/.X11-unix (1777, as X expects), in a /tmp made first.

    The images make /tmp a symlink into the session's disk-quota tmpfs, empty
    at start (`identity.prepare_writable_dirs` explains; it cannot be imported
    here), and a directory made there by the session user would be the user's
    to rename or replace.
    """
    for link in ("/tmp", "/var/tmp"):
        if os.path.islink(link):
            _make_sticky(os.path.join(os.path.dirname(link), os.readlink(link)))
    _make_sticky("/tmp/.X11-unix")


def _make_sticky(path: str) -> None:
    try:
        os.mkdir(path, 0o1777)
        os.chmod(path, 0o1777)  # whatever the umask
    except OSError:
        pass  # there already (image without a tmpfs), or Xvfb says what is wrong


def main() -> None:
    """Spawn Xvfb when the screen size is readable, then become the agent."""
    width, _, height = os.environ.get("SANDBOX_SCREEN_SIZE", "1280x800").lower().partition("x")
    prefix = session_user_prefix()
    if prefix:
        _make_socket_directory()
    if width.isdigit() and height.isdigit():  # else the agent reports the bad size
        env = {key: value for key, value in os.environ.items() if not key.startswith(_AGENT)}
        try:
            pid, read_fd = spawn_xvfb(
                os.environ.get("DISPLAY") or ":0", int(width), int(height), env, prefix=prefix
            )
        except OSError as exc:
            print(f"sandbox-agent: cannot start Xvfb early: {exc}", file=sys.stderr)
        else:
            os.set_inheritable(read_fd, True)
            os.environ[XVFB_ENV] = f"{pid}:{read_fd}"
    # -I as in the image's CMD: no environment, working or user directory
    # reaches the agent's imports.
    os.execv(sys.executable, [sys.executable, "-I", "-c", _agent_main()])


if __name__ == "__main__":
    main()
