"""The session user: who the agent's children run as, and whose file rights file tools use.

The privilege drop itself needs root (as the agent is in the images); those tests
are skipped for a developer running the suite as an ordinary user.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.agent.code_runner import CodeRunner
from sandbox.agent.identity import (
    SessionUser,
    acting_as,
    argv_as,
    popen_kwargs,
    populate_home,
    session_environment,
)
from sandbox.agent.persistent_shell import PersistentShell

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

NOBODY = SessionUser(uid=65534, gid=65534, name="nobody", home="/nonexistent")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory other users can enter (pytest's own open_dir is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-identity-"))
    path.chmod(0o1777)  # like /tmp and /dev/shm, where the agent keeps its state
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_without_a_named_user_nobody_is_become() -> None:
    assert SessionUser.current({}) is None
    assert popen_kwargs(None) == {}
    assert argv_as(None, ["Xvfb", ":0"]) == ["Xvfb", ":0"]


@needs_root
def test_a_root_agent_refuses_an_unknown_or_root_session_user() -> None:
    with pytest.raises(LookupError, match="does not exist"):
        SessionUser.current({"SANDBOX_AGENT_USER": "no-such-user-here"})
    with pytest.raises(LookupError, match="is root"):
        SessionUser.current({"SANDBOX_AGENT_USER": "root"})


@needs_root
def test_a_root_agent_finds_the_named_user() -> None:
    user = SessionUser.current({"SANDBOX_AGENT_USER": "nobody"})
    assert user is not None
    assert (user.uid, user.name) == (65534, "nobody")


def test_the_session_environment_has_the_users_identity_and_none_of_the_agents_settings() -> None:
    env = session_environment(
        {
            "PATH": "/usr/bin",
            "HOME": "/root",
            "SANDBOX_AGENT_TOKEN_FILE": "/run/sandbox/agent/token",
            "SANDBOX_AGENT_SOCKET": "/run/sandbox/agent/agent.sock",
            "SANDBOX_SCREEN_SIZE": "800x600",
        },
        SessionUser(uid=1000, gid=1000, name="sandbox", home="/home/sandbox"),
    )
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/sandbox",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "SANDBOX_SCREEN_SIZE": "800x600",
    }


def test_setpriv_runs_the_rest_as_the_user() -> None:
    assert argv_as(NOBODY, ["Xvfb"]) == [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        "Xvfb",
    ]


@needs_root
def test_file_access_as_the_user_cannot_read_roots_private_file(open_dir: Path) -> None:
    secret = open_dir / "token"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    with acting_as(NOBODY), pytest.raises(PermissionError):
        secret.read_text()
    assert secret.read_text() == "s3cret", "the agent's own rights come back after the block"


@needs_root
def test_files_made_as_the_user_are_the_users(open_dir: Path) -> None:
    with acting_as(NOBODY):
        (open_dir / "made").write_text("x")
    assert (open_dir / "made").stat().st_uid == NOBODY.uid


@needs_root
def test_the_persistent_shell_runs_as_the_user_without_capabilities(open_dir: Path) -> None:
    state = open_dir / "state"
    with acting_as(NOBODY):
        state.mkdir(mode=0o700)
    shell = PersistentShell(
        home="/", state_dir=str(state), env={"PATH": os.defpath}, output_limit=4096, user=NOBODY
    )
    try:
        result = shell.run("id -u; id -G; grep CapEff /proc/self/status", timeout=10)
    finally:
        shell.close()
    uid, groups, caps = result.stdout.splitlines()
    assert (uid, groups) == ("65534", "65534")
    assert caps.split() == ["CapEff:", "0000000000000000"]


@needs_root
def test_programs_run_as_the_user(open_dir: Path) -> None:
    scratch = open_dir / "scratch"
    runner = CodeRunner(
        cwd="/", scratch_dir=str(scratch), env={"PATH": os.defpath}, output_limit=4096, user=NOBODY
    )
    result = runner.run("import os; print(os.getuid(), os.getgroups())", "python", timeout=20)
    assert result.stdout.strip() == "65534 []", result.stderr
    assert sys.executable  # the agent's python ran the program when PATH had none


@needs_root
def test_the_home_is_filled_from_the_template_as_the_user(open_dir: Path) -> None:
    template, home = open_dir / "template", open_dir / "home"
    (template / ".config").mkdir(parents=True)
    (template / ".bashrc").write_text("alias ll='ls -l'\n")
    (template / ".config" / "app.ini").write_text("[app]\n")
    home.mkdir()
    os.chown(home, NOBODY.uid, NOBODY.gid)
    (home / ".bashrc").write_text("mine\n")  # already there: kept
    user = SessionUser(NOBODY.uid, NOBODY.gid, NOBODY.name, str(home))
    assert populate_home(user, str(template)) == 1
    assert (home / ".bashrc").read_text() == "mine\n"
    assert (home / ".config" / "app.ini").read_text() == "[app]\n"
    assert (home / ".config" / "app.ini").stat().st_uid == NOBODY.uid


@pytest.mark.parametrize(
    "plant",
    [
        'mkfifo "$d/next"',  # opening it for writing would block the agent
        'ln -s /etc/passwd "$d/next"',
        'mkdir "$d/next"',
    ],
)
def test_what_a_command_plants_in_the_state_directory_does_not_stop_the_shell(
    open_dir: Path, plant: str
) -> None:
    state = open_dir / "state"
    shell = PersistentShell(
        home="/", state_dir=str(state), env={"PATH": os.defpath}, output_limit=4096
    )
    try:
        # The command file the agent writes next is the one being sourced now.
        command = f'd=$(dirname "${{BASH_SOURCE[0]}}"); rm -f "$d/command.sh"; {plant}'
        shell.run(command.replace("$d/next", "$d/command.sh"), timeout=10)
        result = shell.run("echo still here", timeout=10)
    finally:
        shell.close()
    assert result.stdout == "still here\n"
