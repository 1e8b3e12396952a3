"""vm:accessibility_tree without D-Bus: the walk's caps over a fake desktop, the checks
of the reader's answer, the linear and XML forms, and the handler with stand-in readers."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.agent.desktop import a11y, a11y_reader, atspi_bus
from sandbox.agent.desktop.atspi_bus import Read
from sandbox.agent.errors import ToolFailed, ToolTimeout
from sandbox.agent.params import Params
from sandbox.agent.toolsets import _desktop_a11y
from sandbox.agent.toolsets._desktop_a11y import A11yTools

SHOWN = ["enabled", "showing", "visible"]


class FakeNode:
    def __init__(self, role: str, name: str = "", *children: FakeNode, **info: Any) -> None:
        self.role_name, self.name, self.children = role, name, list(children)
        self.extra = info
        self.read = False
        self.role_asked = False

    def states(self) -> list[str]:
        return list(self.extra.get("states", SHOWN))

    def role(self) -> str:
        self.role_asked = True
        return self.role_name

    def info(self, max_text: int) -> dict[str, Any]:
        self.read = True
        text = str(self.extra.get("text", ""))[:max_text]
        states = self.extra.get("states", SHOWN)
        return {"role": self.role_name, "name": self.name, "text": text, "states": list(states),
                "position": [1, 2], "size": [30, 40]}  # fmt: skip

    def child_count(self) -> int:
        return len(self.children)

    def child(self, index: int) -> FakeNode | None:
        return self.children[index]


class FakeDesktop:
    """A `Desktop` over `FakeNode`s (each node its own reference), counting its batches."""

    def __init__(self, root: FakeNode) -> None:
        self._root = root
        self.batches: list[tuple[str, int]] = []
        self.late = False

    def root(self) -> FakeNode:
        return self._root

    def states(self, nodes: Sequence[FakeNode]) -> list[list[str]]:
        self.batches.append(("states", len(nodes)))
        return [node.states() for node in nodes]

    def roles(self, nodes: Sequence[FakeNode]) -> list[str]:
        self.batches.append(("roles", len(nodes)))
        return [node.role() for node in nodes]

    def read(
        self, nodes: Sequence[FakeNode], max_text: int, max_children: int
    ) -> list[Read | None]:
        self.batches.append(("read", len(nodes)))
        return [
            None if node.extra.get("gone") else
            Read(node.info(max_text), len(node.children), node.children[:max_children])
            for node in nodes
        ]  # fmt: skip


def walk(root: FakeNode, caps: dict[str, Any]) -> dict[str, Any]:
    return a11y_reader.walk(FakeDesktop(root), caps)


def editor() -> FakeNode:
    text = FakeNode("text", "", text="hello\tworld\nline two", states=[*SHOWN, "focused"])
    hidden = FakeNode("menu", "File", FakeNode("menu item", "Quit"), states=["enabled"])
    frame = FakeNode("frame", "Untitled - Mousepad", FakeNode("filler", "", text), hidden)
    return FakeNode("desktop frame", "main", FakeNode("application", "mousepad", frame))


def caps(**overrides: Any) -> dict[str, Any]:
    return {"max_depth": 30, "max_nodes": 1000, "max_children": 100, "max_text": 1000,
            "showing_only": True, "deadline_s": 30.0, **overrides}  # fmt: skip


def tree_of(answer: dict[str, Any], **limits: int) -> a11y.Tree:
    limits = {"max_depth": 30, "max_nodes": 1000, "max_text": 1000, **limits}
    return a11y.parse_answer(json.dumps(answer).encode(), **limits)


def roles(tree: a11y.Tree) -> list[str]:
    return [line.split("\t")[0] for line in a11y.linearize(tree).splitlines()[1:]]


def test_the_linear_form_has_one_line_per_shown_node_in_document_order() -> None:
    tree = tree_of(walk(editor(), caps()))
    lines = a11y.linearize(tree).splitlines()
    assert lines[0] == "role\tname\ttext\tstates\tposition\tsize"
    assert roles(tree) == ["desktop-frame", "application", "frame", "filler", "text"]
    text_line = lines[-1].split("\t")
    assert text_line == [
        "text", "", "hello\\tworld\\nline two", "enabled,focused,showing,visible",
        "(1, 2)", "(30, 40)",
    ]  # fmt: skip
    assert tree.nodes == 5
    assert tree.truncated == ()


def test_hidden_widgets_are_left_out_unless_asked_for() -> None:
    everything = tree_of(walk(editor(), caps(showing_only=False)))
    assert roles(everything)[-2:] == ["menu", "menu-item"]


def test_a_hidden_widget_is_judged_by_role_and_states_alone() -> None:
    """Its other fields are D-Bus round trips nobody needs: they are never asked."""
    hidden = FakeNode("menu", "File", states=["enabled"])
    shown = FakeNode("push button", "OK")
    walk(FakeNode("desktop frame", "main", hidden, shown), caps())
    assert hidden.read is False
    assert shown.read is True


def test_only_the_desktops_children_are_kept_hidden_for_their_role() -> None:
    """An application is never showing yet holds its windows; deeper down, a hidden
    widget is off the screen whatever its role, which is then never asked."""
    deep = FakeNode("application", "embedded", FakeNode("push button", "Go"), states=[])
    app = FakeNode("application", "mousepad", FakeNode("frame", "Editor", deep), states=[])
    hidden_frame = FakeNode("frame", "gone", states=[])
    tree = tree_of(walk(FakeNode("desktop frame", "main", app, hidden_frame), caps()))
    assert roles(tree) == ["desktop-frame", "application", "frame"]
    assert app.role_asked is True
    assert deep.role_asked is False


def test_each_cap_cuts_the_tree_and_is_named() -> None:
    shallow = tree_of(walk(editor(), caps(max_depth=2)))
    assert roles(shallow) == ["desktop-frame", "application", "frame"]
    assert shallow.truncated == ("depth",)
    few = tree_of(walk(editor(), caps(max_nodes=3)))
    assert few.nodes == 3
    assert few.truncated == ("nodes",)
    wide = FakeNode("desktop frame", "", *(FakeNode("application", str(i)) for i in range(5)))
    narrow = tree_of(walk(wide, caps(max_children=2)))
    assert roles(narrow) == ["desktop-frame", "application", "application"]
    assert narrow.truncated == ("children",)
    late = tree_of(walk(editor(), caps(deadline_s=-1)))
    assert roles(late) == ["desktop-frame"]
    assert late.truncated == ("time",)


def test_the_tree_is_asked_for_a_level_at_a_time_not_a_node_at_a_time() -> None:
    """Each ask is a batch of D-Bus calls sent at once: a read costs a few per level."""
    buttons = [FakeNode("push button", str(i)) for i in range(40)]
    panels = [FakeNode("panel", str(i), *buttons[i * 4 : i * 4 + 4]) for i in range(10)]
    app = FakeNode("application", "app", FakeNode("frame", "f", *panels), states=[])
    desktop = FakeDesktop(FakeNode("desktop frame", "main", app))
    tree = tree_of(a11y_reader.walk(desktop, caps()))
    assert tree.nodes == 1 + 1 + 1 + 10 + 40
    assert desktop.batches == [
        ("read", 1),
        ("states", 1), ("roles", 1), ("read", 1),  # the application, hidden yet kept
        ("states", 1), ("read", 1),
        ("states", 10), ("read", 10),
        ("states", 40), ("read", 40),
    ]  # fmt: skip


def test_a_level_that_answers_after_the_deadline_is_left_out_whole() -> None:
    class Slow(FakeDesktop):
        def read(
            self, nodes: Sequence[FakeNode], max_text: int, max_children: int
        ) -> list[Read | None]:
            if nodes and nodes[0].role_name == "filler":
                time.sleep(0.3)
            return super().read(nodes, max_text, max_children)

    answer = a11y_reader.walk(Slow(editor()), caps(deadline_s=0.2))
    tree = tree_of(answer)
    assert roles(tree) == ["desktop-frame", "application", "frame"]
    assert tree.truncated == ("time",)


def test_a_node_gone_mid_read_is_left_out() -> None:
    gone = FakeNode("push button", "Gone", gone=True)
    tree = tree_of(walk(FakeNode("desktop frame", "main", gone, FakeNode("label", "Hi")), caps()))
    assert roles(tree) == ["desktop-frame", "label"]
    assert tree.nodes == 2


def test_a_node_listed_twice_or_under_itself_is_shown_once() -> None:
    button = FakeNode("push button", "OK")
    frame = FakeNode("frame", "f", button, button)
    frame.children.append(frame)  # a program that names its window as its own child
    tree = tree_of(walk(FakeNode("desktop frame", "main", frame), caps()))
    assert roles(tree) == ["desktop-frame", "frame", "push-button"]


def test_the_node_cap_stops_asking_states_once_the_room_is_filled() -> None:
    many = [FakeNode("push button", str(i)) for i in range(500)]
    desktop = FakeDesktop(FakeNode("desktop frame", "main", FakeNode("frame", "f", *many)))
    tree = tree_of(a11y_reader.walk(desktop, caps(max_nodes=10, max_children=1000)))
    assert tree.nodes == 10
    assert tree.truncated == ("nodes",)
    asked = sum(size for kind, size in desktop.batches if kind == "states")
    assert asked <= 1 + 64  # the frame, then one chunk of its children


def test_a_program_that_stalled_makes_the_tree_say_it_was_cut_for_time() -> None:
    desktop = FakeDesktop(editor())
    desktop.late = True
    assert tree_of(a11y_reader.walk(desktop, caps())).truncated == ("time",)


def test_names_and_text_are_cut_to_the_text_cap() -> None:
    answer = walk(FakeNode("desktop frame", "x" * 50, text="y" * 50), caps())
    (line,) = a11y.linearize(tree_of(answer, max_text=10)).splitlines()[1:]
    assert line.split("\t")[1:3] == ["x" * 10, "y" * 10]


def test_the_xml_form_is_osworlds() -> None:
    root = ET.fromstring(a11y.to_xml(tree_of(walk(editor(), caps()))))
    assert root.tag == "desktop-frame"
    assert root.get("name") == "main"
    (app,) = root
    assert app.tag == "application"
    assert app.get("name") == "mousepad"
    (text,) = root.iter("text")
    assert text.text == "hello\tworld\nline two"
    assert text.get(f"{{{a11y.STATE_NS}}}focused") == "true"
    assert text.get(f"{{{a11y.COMPONENT_NS}}}screencoord") == "(1, 2)"
    assert text.get(f"{{{a11y.COMPONENT_NS}}}size") == "(30, 40)"


def test_what_a_program_names_itself_cannot_break_the_xml_or_the_lines() -> None:
    odd = {"role": "push button", "name": 'a"<b>&\x00\x1b', "text": "\x07ok\r\u2028",
           "states": ["showing", 3], "position": [1, "x"], "size": [True, 2],
           "children": "none"}  # fmt: skip
    tree = tree_of({"ok": True, "tree": {"role": "9 lives<>", "children": [odd]}})
    root = ET.fromstring(a11y.to_xml(tree))
    (button,) = root
    assert button.tag == "push-button"
    assert button.get("name") == 'a"<b>&'
    assert button.text == "ok\n\u2028"  # XML reads a carriage return as a newline
    lines = a11y.linearize(tree).splitlines()
    assert lines[1].split("\t")[0] == "_9-lives"
    assert lines[2].split("\t") == [
        "push-button",
        'a"<b>&\x00\x1b',
        "\x07ok\\r\\u2028",
        "showing",
        "",
        "",
    ]


def test_an_answer_with_more_nodes_than_asked_is_cut_and_says_so() -> None:
    many = {"role": "desktop frame", "children": [{"role": "application"}] * 50}
    tree = tree_of({"ok": True, "tree": many}, max_nodes=4)
    assert tree.nodes == 4
    assert "nodes" in tree.truncated
    deep: dict[str, Any] = {"role": "leaf"}
    for _ in range(20):
        deep = {"role": "panel", "children": [deep]}
    assert tree_of({"ok": True, "tree": deep}, max_depth=3).nodes == 4


@pytest.mark.parametrize(
    ("raw", "stage", "message"),
    [
        (b"not json", "answer", "not JSON"),
        (b"[1]", "answer", "not an object"),
        (b'{"ok": true}', "answer", "no tree"),
        (b'{"ok": false, "stage": "bus", "message": "no bus"}', "bus", "no bus"),
        (b"[" * 100_000, "answer", "not JSON"),
    ],
)
def test_a_broken_answer_is_an_error_saying_why(raw: bytes, stage: str, message: str) -> None:
    with pytest.raises(a11y.ReaderError, match=message) as caught:
        a11y.parse_answer(raw, max_depth=5, max_nodes=5, max_text=5)
    assert caught.value.stage == stage


def tool_params(**overrides: Any) -> Params:
    return Params({"format": "linear", "max_depth": 30, "max_nodes": 1000,
                   "max_children": 100, "showing_only": True, **overrides})  # fmt: skip


def with_reader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str) -> A11yTools:
    """The handler running `source` in place of the AT-SPI reader."""
    script = tmp_path / "reader.py"
    script.write_text(source)
    monkeypatch.setattr(_desktop_a11y, "a11y_reader", SimpleNamespace(__file__=str(script)))
    return A11yTools(cwd=str(tmp_path), env={"PATH": "/usr/bin:/bin"}, user=None)


# A stand-in reader: answers each line of caps with `reply(caps, n)` (n counts its
# requests from 1), and appends its pid to starts.txt when it starts (`first`: it
# is the first one started).
SERVE = (
    "import json, os, sys, time\n"
    "with open('starts.txt', 'a') as out:\n"
    "    out.write(f'{os.getpid()}\\n')\n"
    "first = len(open('starts.txt').read().split()) == 1\n"
    "def tree(name):\n"
    "    return json.dumps({'ok': True, 'nodes': 1, 'tree': {'role': 'desktop frame',\n"
    "                       'name': name}}) + '\\n'\n"
    "for n, line in enumerate(sys.stdin, 1):\n"
    "    caps = json.loads(line)\n"
    "    sys.stdout.write(reply(caps, n))\n"
    "    sys.stdout.flush()\n"
)


def serving(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reply: str) -> A11yTools:
    """A handler whose reader answers the expression `reply` (of `caps`, `n`, `first`, `tree`)."""
    return with_reader(monkeypatch, tmp_path, SERVE.replace("reply(caps, n)", f"({reply})"))


def starts(tmp_path: Path) -> list[str]:
    """The pids of the stand-in readers started so far."""
    path = tmp_path / "starts.txt"
    return path.read_text().split() if path.exists() else []


def name_of(data: dict[str, Any]) -> str:
    return str(data["tree"].splitlines()[1].split("\t")[1])


def test_the_handler_passes_the_caps_and_writes_the_tree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The stand-in reader names its caps in the desktop's name: they arrive on stdin.
    tools = with_reader(monkeypatch, tmp_path, (
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    caps = json.loads(line)\n"
        "    name = f\"{caps['max_depth']}/{caps['max_nodes']}/{caps['max_children']}\"\n"
        "    print(json.dumps({'ok': True, 'nodes': 1, 'truncated': {'depth': True},\n"
        "      'tree': {'role': 'desktop frame', 'name': name}}), flush=True)\n"
    ))  # fmt: skip
    data = tools.accessibility_tree(tool_params(max_depth=3, max_nodes=7, max_children=2))
    assert data["tree"].splitlines()[1].split("\t")[:2] == ["desktop-frame", "3/7/2"]
    assert data["nodes"] == 1
    assert data["truncated"] == ["depth"]
    xml = tools.accessibility_tree(tool_params(format="xml"))
    assert ET.fromstring(xml["tree"]).get("name") == "30/1000/100"
    tools.close()


def test_one_reader_answers_every_call_until_the_toolset_closes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools = serving(monkeypatch, tmp_path, "tree(f'call {n}')")
    names = [name_of(tools.accessibility_tree(tool_params())) for _ in range(3)]
    assert names == ["call 1", "call 2", "call 3"]
    (pid,) = starts(tmp_path)
    tools.close()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    with pytest.raises(ToolFailed, match="closing"):
        tools.accessibility_tree(tool_params())


def test_a_reader_killed_between_calls_is_replaced_within_the_next_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools = serving(monkeypatch, tmp_path, "tree(f'call {n}')")
    assert name_of(tools.accessibility_tree(tool_params())) == "call 1"
    os.kill(int(starts(tmp_path)[0]), signal.SIGKILL)
    assert name_of(tools.accessibility_tree(tool_params())) == "call 1"
    assert len(starts(tmp_path)) == 2
    tools.close()


def test_a_reader_that_dies_mid_call_is_restarted_once_then_the_call_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Each reader dies at its second request: the call is answered by a new one.
    tools = serving(monkeypatch, tmp_path, "tree('ok') if n == 1 else os._exit(3)")
    tools.accessibility_tree(tool_params())
    assert name_of(tools.accessibility_tree(tool_params())) == "ok"
    assert len(starts(tmp_path)) == 2
    tools.close()
    # A reader that never answers is restarted once, not forever.
    (tmp_path / "dying").mkdir()
    die = "[sys.stderr.write('boom'), sys.stderr.flush(), os._exit(3)]"
    dying = serving(monkeypatch, tmp_path / "dying", die)
    with pytest.raises(ToolFailed, match="exited without answering") as caught:
        dying.accessibility_tree(tool_params())
    assert caught.value.data == {"stderr": "boom"}
    assert len(starts(tmp_path / "dying")) == 2
    dying.close()


def test_a_reader_that_hangs_is_killed_at_the_timeout_and_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools = serving(monkeypatch, tmp_path, "tree('late') if first and time.sleep(60) is None"
                    " else tree('on time')")  # fmt: skip
    with pytest.raises(ToolTimeout, match=r"not read within 0\.5s"):
        tools.accessibility_tree(tool_params(timeout=0.5))
    (first,) = starts(tmp_path)
    with pytest.raises(ProcessLookupError):
        os.kill(int(first), 0)
    assert name_of(tools.accessibility_tree(tool_params())) == "on time"
    tools.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("'not json\\n'", "not JSON"),
        ("'[1]\\n'", "not an object"),
        ("'x' * (33 << 20)", "more than 32 MiB"),
    ],
)
def test_a_reader_that_answers_garbage_fails_the_call_and_is_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reply: str, error: str
) -> None:
    tools = serving(monkeypatch, tmp_path, f"{reply} if first else tree('sane')")
    with pytest.raises(ToolFailed, match=error):
        tools.accessibility_tree(tool_params())
    assert name_of(tools.accessibility_tree(tool_params())) == "sane"
    assert len(starts(tmp_path)) == 2
    tools.close()


def test_a_reader_that_writes_past_its_answer_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A second line, ready for the next call to take as its answer, is never read.
    tools = serving(monkeypatch, tmp_path, "tree(f'call {n}') + tree('planted')")
    assert name_of(tools.accessibility_tree(tool_params())) == "call 1"
    assert name_of(tools.accessibility_tree(tool_params())) == "call 1"
    assert len(starts(tmp_path)) == 2
    tools.close()


def test_a_reader_that_cannot_reach_the_bus_fails_the_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools = with_reader(monkeypatch, tmp_path, (
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    sys.stderr.write('dbus says no')\n"
        "    sys.stderr.flush()\n"
        "    print(json.dumps({'ok': False, 'stage': 'bus', 'message': 'no session bus'}),\n"
        "          flush=True)\n"
    ))  # fmt: skip
    with pytest.raises(ToolFailed, match="AT-SPI bus: no session bus") as caught:
        tools.accessibility_tree(tool_params())
    assert caught.value.data == {"stderr": "dbus says no"}
    tools.close()


def test_the_reader_runs_as_a_script_and_reports_a_missing_atspi() -> None:
    # Without python3-gi (the development venv), the real reader says so as JSON.
    import subprocess

    done = subprocess.run(
        _desktop_a11y.reader_argv(),
        input=b"{}\n[]\n{}\n",
        capture_output=True,
        check=True,
    )
    answer, bad, again = map(json.loads, done.stdout.splitlines())
    assert bad["stage"] == "request"
    assert again == answer
    if answer.get("ok") is not False:
        pytest.skip("python3-gi with Atspi is installed here")
    assert answer["stage"] in ("import", "bus")


def test_a_read_that_breaks_is_answered_as_a_failure_and_the_next_one_starts_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a program's answers provoke in the reader fails that read alone."""

    class Links:
        closed = False

        def close(self) -> None:
            self.closed = True

    made: list[Links] = []
    reads = iter([TypeError("unhashable type: 'list'"), None])

    def desktop(links: Links, names: Any, deadline: float) -> FakeDesktop:
        failure = next(reads)
        if failure is not None:
            raise failure
        return FakeDesktop(editor())

    monkeypatch.setattr(atspi_bus, "Names", lambda: object())

    def connect(deadline: float) -> Links:
        made.append(Links())
        return made[-1]

    monkeypatch.setattr(atspi_bus, "connect", connect)
    monkeypatch.setattr(atspi_bus, "BusDesktop", desktop)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"{}\n{}\n")))
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    a11y_reader.main()
    failed, answered = map(json.loads, out.getvalue().splitlines())
    assert failed == {"ok": False, "stage": "read", "message": "TypeError: unhashable type: 'list'"}
    assert answered["ok"] is True
    assert len(made) == 2
    assert made[0].closed
