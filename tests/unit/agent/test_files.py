"""`bash.write_file` and `bash.read_file`."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from .harness import Agent, AgentClient


def test_text_round_trip(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "note.txt"
    text = "héllo\nwörld ✓\n"

    written = client.call("bash.write_file", path=str(path), content=text)
    read = client.call("bash.read_file", path=str(path))

    assert written.data == {"path": str(path), "size": len(text.encode())}
    assert path.read_text(encoding="utf-8") == text
    assert read.data == {
        "path": str(path),
        "content": text,
        "encoding": "utf-8",
        "size": len(text.encode()),
        "truncated": False,
    }


def test_binary_round_trip_as_base64(client: AgentClient, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4
    path = tmp_path / "blob.bin"

    written = client.call(
        "bash.write_file",
        path=str(path),
        content=base64.b64encode(blob).decode(),
        encoding="base64",
    )
    read = client.call("bash.read_file", path=str(path), encoding="base64")

    assert written.data["size"] == len(blob)
    assert path.read_bytes() == blob
    assert base64.b64decode(read.data["content"]) == blob
    assert read.data["encoding"] == "base64"


def test_relative_paths_follow_the_shell_cwd(agent: Agent, tmp_path: Path) -> None:
    client = agent.client
    client.call("bash.write_file", path="at_home.txt", content="home")
    client.run(f"cd {tmp_path}")

    written = client.call("bash.write_file", path="sub/rel.txt", content="rel")
    read = client.call("bash.read_file", path="sub/rel.txt")
    shell = client.run("cat sub/rel.txt")

    assert (agent.home / "at_home.txt").read_text() == "home"
    assert written.data["path"] == str(tmp_path / "sub" / "rel.txt")
    assert read.data["content"] == "rel"
    assert shell.data["stdout"] == "rel"


def test_tilde_means_the_home_directory(agent: Agent) -> None:
    written = agent.client.call("bash.write_file", path="~/notes/todo.txt", content="x")

    assert written.data["path"] == str(agent.home / "notes" / "todo.txt")
    assert agent.client.run("cat ~/notes/todo.txt").data["stdout"] == "x"


def test_written_file_is_visible_to_the_shell(client: AgentClient, tmp_path: Path) -> None:
    client.call("bash.write_file", path=str(tmp_path / "s.sh"), content="echo from file\n")

    assert client.run(f"bash {tmp_path}/s.sh").data["stdout"] == "from file\n"


def test_bad_base64_names_content(client: AgentClient, tmp_path: Path) -> None:
    reply = client.call(
        "bash.write_file", path=str(tmp_path / "x"), content="not base64!", encoding="base64"
    )

    assert reply.status == 400
    assert reply.error["kind"] == "invalid_params"
    assert reply.error["field"] == "content"
    assert not (tmp_path / "x").exists()


def test_unknown_encoding_names_encoding(client: AgentClient, tmp_path: Path) -> None:
    reply = client.call("bash.write_file", path=str(tmp_path / "x"), content="", encoding="utf-16")

    assert reply.status == 400
    assert reply.error["field"] == "encoding"


def test_writing_onto_a_directory_names_path(client: AgentClient, tmp_path: Path) -> None:
    reply = client.call("bash.write_file", path=str(tmp_path), content="x")

    assert reply.status == 400
    assert reply.error["field"] == "path"
    assert "Is a directory" in reply.error["message"]


def test_writing_below_a_file_names_path(client: AgentClient, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    reply = client.call("bash.write_file", path=str(tmp_path / "file" / "child"), content="x")

    assert reply.status == 400
    assert reply.error["field"] == "path"


def test_an_unwritable_path_names_path(client: AgentClient) -> None:
    # Refused for users (permission) and for root (the kernel refuses the write).
    reply = client.call("bash.write_file", path="/proc/version", content="x")

    assert reply.status == 400
    assert reply.error["field"] == "path"


def test_reading_a_missing_file_names_path(client: AgentClient, tmp_path: Path) -> None:
    reply = client.call("bash.read_file", path=str(tmp_path / "missing"))

    assert reply.status == 400
    assert reply.error["field"] == "path"
    assert "No such file or directory" in reply.error["message"]


def test_reading_a_directory_names_path(client: AgentClient, tmp_path: Path) -> None:
    reply = client.call("bash.read_file", path=str(tmp_path))

    assert reply.status == 400
    assert reply.error["field"] == "path"


def test_reading_a_fifo_is_refused_without_blocking(client: AgentClient, tmp_path: Path) -> None:
    # With no writer, a blocking open would hang until the client gave up.
    os.mkfifo(tmp_path / "fifo")

    reply = client.call("bash.read_file", path=str(tmp_path / "fifo"))

    assert reply.status == 400
    assert reply.error["field"] == "path"


def test_writing_a_fifo_is_refused_without_blocking(client: AgentClient, tmp_path: Path) -> None:
    # A FIFO the session planted: with no reader, a blocking open would wait forever.
    os.mkfifo(tmp_path / "fifo")

    reply = client.call("bash.write_file", path=str(tmp_path / "fifo"), content="x")

    assert reply.status == 400
    assert reply.error["field"] == "path"
    assert "not a regular file" in reply.error["message"]
    # The agent is free for the next call (its thread did not stay blocked).
    assert client.call("bash.write_file", path=str(tmp_path / "ok"), content="y").status == 200


def test_writing_a_fifo_with_a_reader_is_refused(client: AgentClient, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    reader = os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        reply = client.call("bash.write_file", path=str(tmp_path / "fifo"), content="x")
        assert reply.status == 400
        assert "not a regular file" in reply.error["message"]
        assert os.read(reader, 10) == b"", "nothing was written into the pipe"
    finally:
        os.close(reader)


@pytest.mark.parametrize(
    "path", ["/proc/self/maps", "/proc/thread-self/status", "/proc/self/fd/0", "/proc/self"]
)
def test_the_agents_own_proc_entries_are_refused(client: AgentClient, path: str) -> None:
    reply = client.call("bash.read_file", path=path)

    assert reply.status == 400
    assert reply.error["field"] == "path"
    assert "Permission denied" in reply.error["message"]


def test_a_link_to_the_agents_proc_entries_is_refused(client: AgentClient, tmp_path: Path) -> None:
    (tmp_path / "maps").symlink_to("/proc/self/maps")
    (tmp_path / "proc").symlink_to("/proc/self")

    for path in (tmp_path / "maps", tmp_path / "proc" / "environ"):
        reply = client.call("bash.read_file", path=str(path))
        assert reply.status == 400
        assert "Permission denied" in reply.error["message"], path
    written = client.call("bash.write_file", path=str(tmp_path / "proc" / "comm"), content="x")
    assert "Permission denied" in written.error["message"]


def test_other_proc_files_stay_readable(client: AgentClient) -> None:
    assert client.call("bash.read_file", path="/proc/cpuinfo").status == 200


def test_non_utf8_file_as_text_names_encoding(client: AgentClient, tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"\x00\xff\xfe")

    reply = client.call("bash.read_file", path=str(tmp_path / "bin"))

    assert reply.status == 400
    assert reply.error["field"] == "encoding"
    assert "base64" in reply.error["message"]


def test_reading_over_the_limit_is_truncated(small_agent: Agent, tmp_path: Path) -> None:
    # 3-byte characters, so the limit (1000) cuts the 334th in two.
    (tmp_path / "big.txt").write_text("€" * 2000, encoding="utf-8")

    text = small_agent.client.call("bash.read_file", path=str(tmp_path / "big.txt"))
    raw = small_agent.client.call(
        "bash.read_file", path=str(tmp_path / "big.txt"), encoding="base64"
    )

    assert text.data["content"] == "€" * 333
    assert text.data["truncated"] is True
    assert text.data["size"] == 6000
    assert base64.b64decode(raw.data["content"]) == ("€" * 2000).encode()[:1000]
    assert raw.data["truncated"] is True
