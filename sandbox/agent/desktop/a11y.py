"""The accessibility tree as agents read it: OSWorld's linearised lines or its XML.

`a11y_reader` walks AT-SPI as the session user and prints the tree as JSON; the
agent trusts none of it (the session's programs name their own widgets), so
`parse_answer` keeps only well-typed fields and at most the caps asked, then
`linearize` or `to_xml` writes it out.

Linear form, one line per node in document order under a header::

    role\tname\ttext\tstates\tposition\tsize
    frame\tUntitled 1 - Mousepad\t\tactive,enabled,showing,...\t(0, 0)\t(640, 480)

Roles are AT-SPI's role names with spaces as dashes (``push-button``), as the
XML tags of OSWorld's form; tabs, newlines and backslashes in names and text
are written ``\\t``, ``\\n``, ``\\\\`` (and the other characters Python's
``splitlines`` breaks at as ``\\xNN``) so a node stays on its line.

XML form: OSWorld's (``desktop-frame`` root, a tag per role, ``name``, states
as ``st:<state>="true"``, ``cp:screencoord="(x, y)"`` and ``cp:size="(w, h)"``,
the node's text as the element's text), with OSWorld's namespace URIs, so its
parsers read it.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

STATE_NS = "https://accessibility.ubuntu.example.org/ns/state"
COMPONENT_NS = "https://accessibility.ubuntu.example.org/ns/component"
LINEAR_HEADER = "role\tname\ttext\tstates\tposition\tsize"
CAPS = ("depth", "nodes", "children", "time")
"""What can cut a tree short, as `Tree.truncated` names them."""

_NOT_XML_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "\t": "\\t",
        "\n": "\\n",
        "\r": "\\r",
        # What else str.splitlines() breaks at, as \xNN / \uNNNN.
        **{c: f"\\x{ord(c):02x}" for c in "\x0b\x0c\x1c\x1d\x1e\x85"},
        **{c: f"\\u{ord(c):04x}" for c in "\u2028\u2029"},
    }
)


class ReaderError(ValueError):
    """The reader's answer is not a tree (it says why, or is malformed)."""

    def __init__(self, message: str, stage: str = "answer") -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class A11yNode:
    """One accessible object.

    Attributes:
        role: AT-SPI's role name (``push button``).
        name: Its accessible name.
        text: Its text, for objects with a text interface.
        states: Its AT-SPI states (``focused``, ``showing``, ...), sorted.
        position: Top-left corner on the screen, or None if it has no extents.
        size: Width and height, or None.
        children: Its children shown.
    """

    role: str
    name: str = ""
    text: str = ""
    states: tuple[str, ...] = ()
    position: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    children: list[A11yNode] = field(default_factory=list)


@dataclass
class Tree:
    """A tree read and what cut it short.

    Attributes:
        root: The desktop.
        nodes: How many nodes it holds.
        truncated: The caps it hit, among `CAPS`.
    """

    root: A11yNode
    nodes: int
    truncated: tuple[str, ...]


def parse_answer(raw: bytes, *, max_depth: int, max_nodes: int, max_text: int) -> Tree:
    """The reader's JSON answer as a `Tree`, keeping well-typed fields within the caps.

    Raises:
        ReaderError: The reader reported a failure, or its answer is not a tree.
    """
    try:
        answer = json.loads(raw)
    except (ValueError, RecursionError):
        raise ReaderError("the accessibility reader's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ReaderError("the accessibility reader's answer is not an object")
    if not answer.get("ok"):
        stage = str(answer.get("stage", "answer"))[:20]
        raise ReaderError(str(answer.get("message", "no reason given"))[:2000], stage)
    raw_tree = answer.get("tree")
    if not isinstance(raw_tree, dict):
        raise ReaderError("the accessibility reader's answer holds no tree")
    budget = [max_nodes]
    root = _node(raw_tree, max_depth, budget, max_text)
    raw_truncated = answer.get("truncated")
    hit = {cap for cap in CAPS if isinstance(raw_truncated, dict) and raw_truncated.get(cap)}
    if budget[0] < 0:
        hit.add("nodes")
    return Tree(root, max_nodes - max(budget[0], 0), tuple(cap for cap in CAPS if cap in hit))


def _node(raw: dict[str, Any], depth_left: int, budget: list[int], max_text: int) -> A11yNode:
    budget[0] -= 1
    states = raw.get("states")
    node = A11yNode(
        role=_text(raw.get("role"), 100) or "unknown",
        name=_text(raw.get("name"), max_text),
        text=_text(raw.get("text"), max_text),
        states=tuple(sorted(_text(s, 50) for s in states if isinstance(s, str)))
        if isinstance(states, list)
        else (),
        position=_pair(raw.get("position")),
        size=_pair(raw.get("size")),
    )
    children = raw.get("children")
    if depth_left <= 0 or not isinstance(children, list):
        return node
    for child in children:
        if budget[0] <= 0:
            budget[0] = -1  # more were sent than asked: say the tree was cut
            break
        if isinstance(child, dict):
            node.children.append(_node(child, depth_left - 1, budget, max_text))
    return node


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _pair(value: Any) -> tuple[int, int] | None:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return value[0], value[1]
    return None


def tag(role: str) -> str:
    """An XML tag (and linear role) for an AT-SPI role name: ``push button`` -> ``push-button``."""
    name = _NOT_TAG_CHARS.sub("", role.strip().replace(" ", "-")) or "unknown"
    return name if name[0].isalpha() or name[0] == "_" else f"_{name}"


def _coords(pair: tuple[int, int] | None) -> str:
    return f"({pair[0]}, {pair[1]})" if pair is not None else ""


def linearize(tree: Tree) -> str:
    """One line per node (document order) under `LINEAR_HEADER`."""
    lines = [LINEAR_HEADER]
    stack = [tree.root]
    while stack:
        node = stack.pop()
        fields = (
            tag(node.role),
            node.name.translate(_ESCAPES),
            node.text.translate(_ESCAPES),
            ",".join(node.states),
            _coords(node.position),
            _coords(node.size),
        )
        lines.append("\t".join(fields))
        stack.extend(reversed(node.children))
    return "\n".join(lines)


def to_xml(tree: Tree) -> str:
    """The tree as OSWorld's XML (a ``desktop-frame`` root), one string."""
    ET.register_namespace("st", STATE_NS)
    ET.register_namespace("cp", COMPONENT_NS)
    root = ET.Element("desktop-frame")
    _xml_fill(root, tree.root)
    for child in tree.root.children:
        _xml_build(root, child)
    return ET.tostring(root, encoding="unicode")


def _xml_build(parent: ET.Element, node: A11yNode) -> None:
    # An explicit stack: a tree is never deeper than its depth cap, but an
    # iteration needs no thought about recursion limits.
    stack = [(parent, node)]
    while stack:
        into, current = stack.pop()
        element = ET.SubElement(into, tag(current.role))
        _xml_fill(element, current)
        stack.extend((element, child) for child in reversed(current.children))


def _xml_fill(element: ET.Element, node: A11yNode) -> None:
    if node.name:
        element.set("name", _xml_safe(node.name))
    for state in node.states:
        element.set(f"{{{STATE_NS}}}{tag(state)}", "true")
    if node.position is not None:
        element.set(f"{{{COMPONENT_NS}}}screencoord", _coords(node.position))
    if node.size is not None:
        element.set(f"{{{COMPONENT_NS}}}size", _coords(node.size))
    if node.text:
        element.text = _xml_safe(node.text)


def _xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 cannot hold (control characters)."""
    return _NOT_XML_CHARS.sub("", text)
