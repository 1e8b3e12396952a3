"""vm.setup and vm.evaluate: steps, getters, metrics and their registries, on a fake desktop."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent.errors import InvalidParams, ToolFailed, ToolTimeout
from sandbox.agent.tasks.evaluation import MAX_EVIDENCE_CHARS, evaluate
from sandbox.agent.tasks.fields import Fields
from sandbox.agent.tasks.getters import GETTERS
from sandbox.agent.tasks.host import BrowserTab, CommandOutput
from sandbox.agent.tasks.metrics import METRICS
from sandbox.agent.tasks.registry import Registry
from sandbox.agent.tasks.steps import STEPS, run_steps
from sandbox.agent.tools.desktop_tasks import MAX_UPLOAD_BYTES, STEP_TYPES
from sandbox.agent.toolsets._desktop_tasks import DesktopTaskHost
from sandbox.backends.desktop import VM, VmConfig
from sandbox.errors import BackendError, SessionError
from sandbox.errors import InvalidParams as ServerInvalidParams
from sandbox.sessions.registry import ToolRegistry
from sandbox.sessions.setup_steps import run_config_setup
from sandbox.sessions.table import Session


class FakeHost:
    """A desktop made of a dict of files, a list of windows and a scripted shell."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.windows_open = ["Terminal", "notes.txt - Editor"]
        self.active: str | None = "Terminal"
        self.clip = ""
        self.log: list[tuple[str, Any]] = []
        self.exit_codes: dict[str, int] = {}
        self.tree = ""
        self.tabs: list[BrowserTab] | None = None
        self.pages: dict[str, str] = {}
        self.sites: dict[str, dict[str, str]] = {}
        self.status: dict[str, Any] = {"status": "running"}

    def run(self, command: str, timeout: float) -> CommandOutput:
        self.log.append(("run", command))
        return CommandOutput(f"out:{command}", "", self.exit_codes.get(command, 0))

    def launch(self, command: str) -> dict[str, Any]:
        self.log.append(("launch", command))
        return {"pid": 42, "log": "/tmp/1.log"}

    def read_file(self, path: str, limit: int) -> bytes | None:
        return self.files.get(path)

    def write_file(self, path: str, data: bytes) -> None:
        self.files[path] = data

    def windows(self, action: str, name: str, *, strict: bool, by_class: bool) -> list[str]:
        matched = [w for w in self.windows_open if (w == name if strict else name in w)]
        self.log.append((action, matched))
        if action == "activate" and matched:
            self.active = matched[0]
        if action == "close":
            self.windows_open = [w for w in self.windows_open if w not in matched]
        return matched

    def active_window_title(self) -> str | None:
        return self.active

    def clipboard(self) -> str:
        return self.clip

    def sleep(self, seconds: float) -> None:
        self.log.append(("sleep", seconds))

    def accessibility_tree(self, options: Mapping[str, Any]) -> str:
        self.log.append(("tree", dict(options)))
        return self.tree

    def browser_tabs(self) -> list[BrowserTab] | None:
        return self.tabs

    def page_text(self, tab: BrowserTab) -> str:
        return self.pages[tab.id]

    def open_page(self, url: str, timeout: float) -> dict[str, str] | None:
        self.log.append(("open_page", (url, timeout)))
        return None if self.tabs is None else self.sites.get(url)

    def close_tab(self, tab: BrowserTab) -> None:
        self.log.append(("close_tab", tab.id))
        assert self.tabs is not None
        self.tabs.remove(tab)

    def agent_status(self) -> Mapping[str, Any]:
        return self.status


def _real_host(tmp_path: Path) -> DesktopTaskHost:
    """The real host, with no programs behind it (its file and X code run here)."""
    return DesktopTaskHost(
        None,  # type: ignore[arg-type]
        tree=lambda params: {"tree": ""},
        status=lambda: {"status": "running"},
        env={"PATH": "/usr/bin:/bin"},
        home=str(tmp_path),
        user=None,
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- registries ---------------------------------------------------------------------


def test_every_declared_step_type_is_registered_and_nothing_else() -> None:
    assert sorted(STEP_TYPES) == STEPS.names


def test_a_registry_refuses_an_unknown_name_naming_the_field_and_the_known_ones() -> None:
    with pytest.raises(InvalidParams) as caught:
        METRICS.get("no_such_metric", "evaluator.func")
    assert caught.value.field == "evaluator.func"
    assert "no_such_metric" in caught.value.message
    assert "exact_match" in caught.value.message


def test_a_name_registered_twice_is_a_bug_caught_at_import() -> None:
    registry = Registry[Any]("thing")
    registry.register("a")(lambda: None)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(lambda: None)


def test_the_named_getters_and_metrics_are_there() -> None:
    for name in ("vm_command_line", "vm_file", "window_title", "clipboard", "rule", "literal"):
        assert name in GETTERS.names
    for name in (
        "exact_match",
        "check_include_exclude",
        "match",
        "compare_numbers",
        "compare_text_file",
        "compare_csv",
        "check_json",
    ):
        assert name in METRICS.names


# -- setup steps ---------------------------------------------------------------------


def test_steps_run_in_order_and_report_what_they_did() -> None:
    host = FakeHost()
    done = run_steps(
        host,
        [
            {
                "type": "upload_file",
                "parameters": {"files": [{"path": "/w/a.txt", "content": b64("hi")}]},
            },
            {"type": "execute", "parameters": {"command": ["echo", "a b"]}},
            {"type": "command", "parameters": {"command": "true", "shell": True}},
            {"type": "launch", "parameters": {"command": ["xterm"]}},
            {"type": "sleep", "parameters": {"seconds": 0.5}},
            {"type": "activate_window", "parameters": {"window_name": "notes"}},
            {"type": "close_window", "parameters": {"window_name": "Terminal", "strict": True}},
        ],
    )
    assert host.files["/w/a.txt"] == b"hi"
    assert [item["type"] for item in done][:2] == ["upload_file", "execute"]
    assert ("run", "echo 'a b'") in host.log
    assert ("launch", "xterm") in host.log
    assert ("sleep", 0.5) in host.log
    assert host.active == "notes.txt - Editor"
    assert host.windows_open == ["notes.txt - Editor"]


def test_an_unknown_step_type_is_refused_naming_it_before_any_step_runs() -> None:
    host = FakeHost()
    steps = [{"type": "execute", "parameters": {"command": "x"}}, {"type": "teleport"}]
    with pytest.raises(InvalidParams) as caught:
        run_steps(host, steps)
    assert caught.value.field == "steps.1.type"
    assert "teleport" in caught.value.message
    assert host.log == []


def test_a_bad_step_parameter_is_named() -> None:
    with pytest.raises(InvalidParams) as caught:
        run_steps(FakeHost(), [{"type": "sleep", "parameters": {"seconds": 600}}])
    assert caught.value.field == "steps.0.parameters.seconds"
    with pytest.raises(InvalidParams) as caught:
        run_steps(FakeHost(), [{"type": "launch", "parameters": {}}])
    assert caught.value.field == "steps.0.parameters.command"


def test_a_failing_step_fails_the_call_naming_the_step() -> None:
    host = FakeHost()
    host.exit_codes["false"] = 1
    steps = [
        {"type": "sleep", "parameters": {"seconds": 0}},
        {"type": "execute", "parameters": {"command": "false"}},
    ]
    with pytest.raises(ToolFailed) as caught:
        run_steps(host, steps)
    assert caught.value.message.startswith("steps.1 (execute) failed")
    assert caught.value.data["step"] == 1


def test_a_non_zero_exit_passes_when_check_is_false() -> None:
    host = FakeHost()
    host.exit_codes["false"] = 1
    done = run_steps(
        host, [{"type": "execute", "parameters": {"command": "false", "check": False}}]
    )
    assert done[0]["exit_code"] == 1


def test_a_window_step_with_no_such_window_fails() -> None:
    with pytest.raises(ToolFailed, match="no window"):
        run_steps(FakeHost(), [{"type": "activate_window", "parameters": {"window_name": "Gimp"}}])


def test_uploads_are_bounded_per_call_and_must_be_base64() -> None:
    with pytest.raises(InvalidParams) as caught:
        run_steps(
            FakeHost(),
            [{"type": "upload_file", "parameters": {"files": [{"path": "a", "content": "!!"}]}}],
        )
    assert caught.value.field == "steps.0.parameters.files.0.content"
    big = base64.b64encode(b"x" * (MAX_UPLOAD_BYTES // 2 + 1)).decode()
    files = [{"path": "a", "content": big}, {"path": "b", "content": big}]
    with pytest.raises(InvalidParams) as caught:
        run_steps(FakeHost(), [{"type": "upload_file", "parameters": {"files": files}}])
    assert caught.value.field == "steps.0.parameters.files.1.content"


# -- metrics --------------------------------------------------------------------------

NO_OPTIONS = Fields({}, "options")


@pytest.mark.parametrize(
    ("func", "result", "expected", "options", "score"),
    [
        ("exact_match", "yes", {"expected": "yes"}, {}, 1.0),
        ("exact_match", "yes ", {"expected": "yes"}, {}, 0.0),
        ("check_include_exclude", "a b c", {"include": ["a", "c"], "exclude": ["z"]}, {}, 1.0),
        ("check_include_exclude", "a b z", {"include": ["a"], "exclude": ["z"]}, {}, 0.0),
        ("match", "version 3.11.4", {"pattern": r"3\.11\.\d+"}, {}, 1.0),
        ("match", "version 3.11.4", r"^3\.11", {"full": True}, 0.0),
        ("compare_numbers", " 3.14159\n", 3.14, {"tolerance": 0.01}, 1.0),
        ("compare_numbers", "3.2", {"expected": 3.14}, {"tolerance": 0.01}, 0.0),
        ("compare_numbers", "not a number", 1, {}, 0.0),
        ("compare_text_file", "line 1\r\nline 2\n", "line 1\nline 2", {}, 1.0),
        (
            "compare_text_file",
            "Line  1",
            "line 1",
            {"ignore_case": True, "ignore_blanks": True},
            1.0,
        ),
        ("compare_text_file", "line 1", "line 2", {}, 0.0),
        ("compare_csv", "a, b\n1,2\n", "a,b\n1, 2", {}, 1.0),
        ("compare_csv", "a,b\n1,2", "a,b\n1,3", {}, 0.0),
        (
            "check_json",
            '{"a": {"b": [1, 5]}}',
            {"expect": [{"key": ["a", "b", 1], "method": "ge", "ref": 5}]},
            {},
            1.0,
        ),
        ("check_json", '{"a": 1}', {"unexpect": [{"key": "a", "method": "eq", "ref": 1}]}, {}, 0.0),
        ("check_json", '{"a": 1, "b": [2]}', '{"b": [2], "a": 1}', {}, 1.0),
        ("check_json", "not json", '{"a": 1}', {}, 0.0),
    ],
)
def test_metrics_score_as_documented(
    func: str, result: Any, expected: Any, options: dict[str, Any], score: float
) -> None:
    assert METRICS.get(func, "func")(result, expected, Fields(options, "options")) == score


# -- evaluation -----------------------------------------------------------------------


def test_a_file_compared_with_a_literal_scores_one_when_done_and_zero_when_not() -> None:
    host = FakeHost()
    evaluator = {
        "func": "compare_text_file",
        "result": {"type": "vm_file", "path": "/w/out.txt"},
        "expected": {"type": "literal", "value": "hello\nworld\n"},
    }
    host.files["/w/out.txt"] = b"hello\n"
    assert evaluate(host, evaluator)["score"] == 0.0
    host.files["/w/out.txt"] = b"hello\nworld\n"
    answer = evaluate(host, evaluator)
    assert answer["score"] == 1.0
    assert answer["metrics"][0]["result"] == {"type": "vm_file", "value": "hello\nworld\n"}


def test_a_missing_file_scores_zero_and_says_so() -> None:
    answer = evaluate(
        FakeHost(),
        {
            "func": "compare_text_file",
            "result": {"type": "vm_file", "path": "/nope"},
            "expected": {"type": "literal", "value": "x"},
        },
    )
    assert answer["score"] == 0.0
    assert answer["metrics"][0]["result"]["missing"] is True


def test_several_metrics_join_with_and_or() -> None:
    host = FakeHost()
    host.clip = "copied text"
    evaluator: dict[str, Any] = {
        "func": ["exact_match", "check_include_exclude"],
        "result": [{"type": "window_title"}, {"type": "clipboard"}],
        "expected": [
            {"type": "rule", "rules": {"expected": "Terminal"}},
            {"type": "rule", "rules": {"include": ["absent"]}},
        ],
    }
    assert evaluate(host, evaluator)["score"] == 0.0
    assert evaluate(host, {**evaluator, "conj": "or"})["score"] == 1.0


def test_command_output_is_a_getter() -> None:
    answer = evaluate(
        FakeHost(),
        {
            "func": "check_include_exclude",
            "result": {"type": "vm_command_line", "command": ["cat", "/etc/x"]},
            "expected": {"type": "rule", "rules": {"include": ["/etc/x"]}},
        },
    )
    assert answer["score"] == 1.0


def test_evidence_is_bounded() -> None:
    host = FakeHost()
    host.files["/big"] = b"x" * (MAX_EVIDENCE_CHARS * 3)
    answer = evaluate(
        host,
        {
            "func": "exact_match",
            "result": {"type": "vm_file", "path": "/big"},
            "expected": {"type": "literal", "value": "x"},
        },
    )
    evidence = answer["metrics"][0]["result"]
    assert len(evidence["value"]) == MAX_EVIDENCE_CHARS
    assert evidence["truncated"] is True


@pytest.mark.parametrize(
    ("evaluator", "field"),
    [
        ({"func": "nope", "result": {"type": "clipboard"}}, "evaluator.func"),
        (
            {"func": ["exact_match", "bogus"], "result": [{"type": "clipboard"}] * 2},
            "evaluator.func.1",
        ),
        ({"func": "exact_match", "result": {"type": "teleporter"}}, "evaluator.result.type"),
        ({"func": "exact_match", "result": {"type": "page_info"}}, "evaluator.result.url"),
        (
            {"func": "match", "result": {"type": "accessibility_tree", "format": "html"}},
            "evaluator.result.format",
        ),
        (
            {"func": "match", "result": {"type": "accessibility_tree", "max_nodes": 0}},
            "evaluator.result.max_nodes",
        ),
        (
            {"func": "match", "result": {"type": "chromium_page", "field": "cookies"}},
            "evaluator.result.field",
        ),
        (
            {"func": ["exact_match", "exact_match"], "result": {"type": "clipboard"}},
            "evaluator.result",
        ),
        ({"func": "exact_match", "result": {"type": "clipboard"}, "conj": "xor"}, "evaluator.conj"),
        (
            {
                "func": "check_include_exclude",
                "result": {"type": "clipboard"},
                "expected": {"type": "literal", "value": 1},
            },
            "evaluator.expected",
        ),
        ({"func": "exact_match", "result": {"type": "vm_file"}}, "evaluator.result.path"),
    ],
)
def test_a_malformed_evaluator_is_refused_naming_the_field(
    evaluator: dict[str, Any], field: str
) -> None:
    host = FakeHost()
    host.clip = "x"
    with pytest.raises(InvalidParams) as caught:
        evaluate(host, evaluator)
    assert caught.value.field == field


def test_postconfig_steps_run_before_the_getters() -> None:
    host = FakeHost()
    evaluator = {
        "postconfig": [
            {"type": "upload_file", "parameters": {"files": [{"path": "/f", "content": b64("ok")}]}}
        ],
        "func": "exact_match",
        "result": {"type": "vm_file", "path": "/f"},
        "expected": {"type": "rule", "rules": {"expected": "ok"}},
    }
    assert evaluate(host, evaluator)["score"] == 1.0


# -- the desktop host, as the agent's own user ------------------------------------------


def test_the_host_reads_and_writes_files_with_a_program(tmp_path: Path) -> None:
    host = _real_host(tmp_path)
    host.write_file(str(tmp_path / "deep" / "dir" / "f.txt"), b"bytes\x00here")
    assert (tmp_path / "deep" / "dir" / "f.txt").read_bytes() == b"bytes\x00here"
    assert host.read_file(str(tmp_path / "deep" / "dir" / "f.txt"), 5) == b"bytes\x00"
    assert host.read_file(str(tmp_path / "absent"), 5) is None
    with pytest.raises(ToolFailed, match="cannot read"):
        host.read_file(str(tmp_path / "deep"), 5)


# -- the server side: the session config and the create's setup ---------------------------


def test_the_session_config_names_an_unknown_step_type() -> None:
    registry = ToolRegistry([])
    with pytest.raises(ServerInvalidParams) as caught:
        registry.validate_config(
            VM, {"setup": [{"type": "sleep", "parameters": {"seconds": 1}}, {"type": "warp"}]}
        )
    assert caught.value.field == "config.setup.1.type"


def test_setup_steps_stay_out_of_labels_pool_keys_and_the_environment() -> None:
    config = VmConfig(setup=[{"type": "sleep", "parameters": {"seconds": 1}}])  # type: ignore[list-item]
    assert "setup" not in config.model_dump()
    assert not any("sleep" in value for value in VM.environment(config).values())


class FakeAgents:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(
        self, url: str, token: str, tool: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        self.calls.append((tool, params))
        if self.error is not None:
            raise self.error
        return {"steps": []}


def session() -> Session:
    return Session(
        session_id="vm_w_001_x",
        session_name="s",
        worker_id="w",
        resource_type="vm",
        config={},
        token="t",
        created_at=0.0,
        expires_at=1.0,
        last_used_at=0.0,
        agent_url="unix:/x",
    )


def test_the_create_runs_the_configs_steps_with_vm_setup() -> None:
    agents = FakeAgents()
    config = VmConfig(setup=[{"type": "sleep", "parameters": {"seconds": 1}}])  # type: ignore[list-item]
    asyncio.run(run_config_setup(agents, session(), config))  # type: ignore[arg-type]
    assert agents.calls == [
        ("vm.setup", {"steps": [{"type": "sleep", "parameters": {"seconds": 1}}], "timeout": 600.0})
    ]
    asyncio.run(run_config_setup(agents, session(), VmConfig()))  # type: ignore[arg-type]
    assert len(agents.calls) == 1


def test_a_refused_step_is_a_1002_naming_the_config_field() -> None:
    refused = ServerInvalidParams(
        "steps.0.parameters.seconds is 600", field="params.steps.0.parameters.seconds"
    )
    config = VmConfig(setup=[{"type": "sleep", "parameters": {"seconds": 600}}])  # type: ignore[list-item]
    with pytest.raises(ServerInvalidParams) as caught:
        asyncio.run(run_config_setup(FakeAgents(refused), session(), config))  # type: ignore[arg-type]
    assert caught.value.field == "config.setup.0.parameters.seconds"


def test_a_failing_step_is_a_1003_naming_the_step() -> None:
    failed = BackendError(
        "steps.1 (execute) failed: exit 1", data={"step": 1, "type": "execute", "done": []}
    )
    config = VmConfig(setup=[{"type": "sleep"}, {"type": "execute"}])  # type: ignore[list-item]
    with pytest.raises(SessionError) as caught:
        asyncio.run(run_config_setup(FakeAgents(failed), session(), config))  # type: ignore[arg-type]
    assert caught.value.message.startswith("config.setup.1: setup failed")
    assert caught.value.data["field"] == "config.setup.1"
    assert json.dumps(caught.value.data)  # plain data for the envelope


def test_the_setup_stops_at_its_timeout_naming_the_step_it_did_not_reach() -> None:
    class SlowHost(FakeHost):
        def sleep(self, seconds: float) -> None:
            time.sleep(seconds)

    steps = [
        {"type": "sleep", "parameters": {"seconds": 0.05}},
        {"type": "sleep", "parameters": {"seconds": 1}},
    ]
    with pytest.raises(ToolTimeout) as caught:
        run_steps(SlowHost(), steps, timeout=0.01)
    assert "steps.1 (sleep)" in caught.value.message
    assert [step["type"] for step in caught.value.data["done"]] == ["sleep"]


def test_the_host_expands_the_home_in_paths(tmp_path: Path) -> None:
    host = _real_host(tmp_path)
    host.write_file("~/notes/a.txt", b"mine")
    assert (tmp_path / "notes" / "a.txt").read_bytes() == b"mine"
    assert host.read_file("~/notes/a.txt", 100) == b"mine"


def test_open_launches_the_files_program_and_refuses_a_missing_file() -> None:
    host = FakeHost()
    done = run_steps(host, [{"type": "open", "parameters": {"path": "/w/my file.txt"}}])
    assert done[0]["path"] == "/w/my file.txt"
    (launched,) = [entry for kind, entry in host.log if kind == "launch"]
    assert "xedit '/w/my file.txt'" in launched

    host.exit_codes["test -e /nope"] = 1
    with pytest.raises(
        ToolFailed, match=r"steps.0 \(open\) failed: cannot open /nope: no such file"
    ):
        run_steps(host, [{"type": "open", "parameters": {"path": "/nope"}}])
