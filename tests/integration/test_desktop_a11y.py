"""vm:accessibility_tree on a real desktop: a GTK editor's widgets through AT-SPI."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import Sandbox

from .support import ServerProcess, ok, worker

TYPED = "hello accessible world"


@pytest.fixture(scope="module")
def sb(server: ServerProcess) -> Iterator[Sandbox]:
    """A worker with a desktop where mousepad is open and holds `TYPED`."""
    with worker(server, "a11y") as sandbox:
        sandbox.create_session_sync("vm", {"screen_size": [1024, 768]})
        launched = ok(sandbox, "vm:launch", command="mousepad", wait_for_window=True)
        assert launched["window"], launched
        ok(sandbox, "vm:type", text=TYPED)
        yield sandbox


def tree_with(sb: Sandbox, needle: str, **params: Any) -> dict[str, Any]:
    """The tree once `needle` shows in it (the editor registers and paints shortly after)."""
    deadline = time.monotonic() + 10
    while True:
        data = ok(sb, "vm:accessibility_tree", **params)
        if needle in data["tree"] or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def test_the_editor_its_frame_and_the_typed_text_show_in_the_linear_tree(sb: Sandbox) -> None:
    data = tree_with(sb, TYPED)
    lines = data["tree"].splitlines()
    assert lines[0] == "role\tname\ttext\tstates\tposition\tsize"
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 6 for row in rows), lines
    assert rows[0][0] == "desktop-frame"
    assert any(row[0] == "application" and row[1].lower() == "mousepad" for row in rows), lines
    frames = [row for row in rows if row[0] == "frame"]
    assert frames, lines
    assert "showing" in frames[0][3].split(","), frames
    assert frames[0][4].startswith("("), frames
    assert frames[0][5].startswith("("), frames
    texts = [row for row in rows if TYPED in row[2]]
    assert texts, lines
    assert "focused" in texts[0][3].split(","), texts
    assert data["nodes"] == len(rows)
    assert data["truncated"] == []


def test_xml_is_osworlds_form(sb: Sandbox) -> None:
    data = tree_with(sb, TYPED, format="xml")
    root = ET.fromstring(data["tree"])
    assert root.tag == "desktop-frame"
    state = "{https://accessibility.ubuntu.example.org/ns/state}"
    component = "{https://accessibility.ubuntu.example.org/ns/component}"
    frames = list(root.iter("frame"))
    assert frames
    assert frames[0].get(state + "showing") == "true"
    assert frames[0].get(component + "screencoord", "").startswith("(")
    assert any(TYPED in (element.text or "") for element in root.iter())


def test_caps_cut_the_tree_and_say_so(sb: Sandbox) -> None:
    tree_with(sb, TYPED)
    shallow = ok(sb, "vm:accessibility_tree", max_depth=2)
    rows = shallow["tree"].splitlines()[1:]
    assert "depth" in shallow["truncated"]
    assert any(row.startswith("frame\t") for row in rows)
    assert TYPED not in shallow["tree"]
    few = ok(sb, "vm:accessibility_tree", max_nodes=5)
    assert few["nodes"] == 5
    assert len(few["tree"].splitlines()) == 6
    assert "nodes" in few["truncated"]
    narrow = ok(sb, "vm:accessibility_tree", max_children=1)
    assert "children" in narrow["truncated"] or narrow["nodes"] < 10
    over = sb.execute_sync("vm:accessibility_tree", {"max_nodes": 10**6})
    assert over["code"] == 1002
    assert "max_nodes" in over["message"]


def test_the_tree_is_read_by_the_session_user(sb: Sandbox) -> None:
    # The reader is a python3 of the session user, like the bus and the editor:
    # caught in the act by a watcher that the session user itself runs.
    watcher = ok(
        sb,
        "vm:launch",
        command="for i in $(seq 400); do ps -eo user=,args= | grep '[a]11y_reader' "
        ">> ~/readers.txt; sleep 0.01; done",
    )
    assert watcher["pid"]
    for _ in range(20):
        ok(sb, "vm:accessibility_tree")
    seen = ok(sb, "vm:run_command", command="sleep 1; cat ~/readers.txt; id -un")["stdout"]
    lines = seen.strip().splitlines()
    readers, me = lines[:-1], lines[-1]
    assert readers, seen
    assert all(line.split()[0] not in ("root", "0") for line in readers), seen
    owners = ok(sb, "vm:run_command", command="ps -o user= -C dbus-daemon,mousepad")["stdout"]
    assert owners.split(), owners
    assert "root" not in owners.split(), owners
    assert me != "root"
