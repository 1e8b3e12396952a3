"""Getters for the accessibility tree and Chromium, OSWorld's `infeasible` convention,
the `download` step, and the optional vm-full image, on fakes (no Docker)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from sandbox import cli
from sandbox.agent.errors import InvalidParams, ToolFailed
from sandbox.agent.tasks import browser
from sandbox.agent.tasks.evaluation import evaluate
from sandbox.agent.tasks.host import BrowserTab, CommandOutput
from sandbox.agent.tasks.steps import MAX_DOWNLOAD_BYTES, run_steps
from sandbox.backends.desktop import FULL_IMAGE, VM, VmConfig
from sandbox.config import Settings
from sandbox.runtime.docker import DockerRuntime
from sandbox.runtime.images import NAMESPACE_ARG, ImageService

from .test_desktop_tasks import FakeHost

REPO_IMAGES = Path(__file__).resolve().parents[3] / "images"
TABS = [
    BrowserTab("T1", "file:///home/sandbox/page.html", "Local page"),
    BrowserTab("T2", "about:blank", "New Tab"),
]


def _host_with_tabs() -> FakeHost:
    host = FakeHost()
    host.tabs = list(TABS)
    host.pages = {"T1": "Hello sandbox\nPress me", "T2": ""}
    return host


def _score(host: FakeHost, evaluator: dict[str, Any]) -> float:
    return float(evaluate(host, evaluator)["score"])


# -- accessibility tree -----------------------------------------------------------------


def test_the_tree_getter_reads_xml_by_default_with_the_tools_caps() -> None:
    host = FakeHost()
    host.tree = '<node role="push-button" name="Save"/>'
    evaluator = {
        "func": "check_include_exclude",
        "result": {"type": "accessibility_tree"},
        "expected": {"type": "rule", "rules": {"include": ['name="Save"'], "exclude": ["Quit"]}},
    }
    assert _score(host, evaluator) == 1.0
    options = dict(host.log)["tree"]
    assert options == {
        "format": "xml",
        "max_depth": 30,
        "max_nodes": 1000,
        "max_children": 100,
        "showing_only": True,
        "timeout": 30.0,
    }


def test_the_tree_getter_passes_its_options_and_works_with_regex() -> None:
    host = FakeHost()
    host.tree = "push-button\tSave\t\tenabled\t(1, 2)\t(3, 4)"
    evaluator = {
        "func": "match",
        "result": {
            "type": "accessibility_tree",
            "format": "linear",
            "max_nodes": 50,
            "showing_only": False,
        },
        "expected": {"type": "literal", "value": r"^push-button\tSave\t"},
    }
    assert _score(host, evaluator) == 1.0
    options = dict(host.log)["tree"]
    assert options["format"] == "linear"
    assert options["max_nodes"] == 50
    assert options["showing_only"] is False


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"max_depth": 101}, "evaluator.result.max_depth"),
        ({"max_children": 2.5}, "evaluator.result.max_children"),
        ({"showing_only": "yes"}, "evaluator.result.showing_only"),
        ({"timeout": 31}, "evaluator.result.timeout"),
    ],
)
def test_bad_tree_options_are_refused_naming_the_field(extra: dict[str, Any], field: str) -> None:
    evaluator = {
        "func": "match",
        "result": {"type": "accessibility_tree", **extra},
        "expected": {"type": "literal", "value": "x"},
    }
    with pytest.raises(InvalidParams) as caught:
        evaluate(FakeHost(), evaluator)
    assert caught.value.field == field


# -- Chromium -------------------------------------------------------------------------------


def test_chromium_page_is_the_active_tab_with_its_text() -> None:
    host = _host_with_tabs()
    page = {"type": "chromium_page"}
    check = {
        "func": "check_json",
        "result": page,
        "expected": {
            "type": "literal",
            "value": {"url": TABS[0].url, "title": "Local page", "text": "Hello sandbox\nPress me"},
        },
    }
    assert _score(host, check) == 1.0
    url = {
        "func": "exact_match",
        "result": {"type": "chromium_page", "field": "url"},
        "expected": {"type": "literal", "value": "file:///home/sandbox/page.html"},
    }
    assert _score(host, url) == 1.0
    text = {
        "func": "check_include_exclude",
        "result": {"type": "chromium_page", "field": "text"},
        "expected": {"type": "rule", "rules": {"include": ["Press me"]}},
    }
    assert _score(host, text) == 1.0


def test_active_tab_info_has_osworlds_content_field() -> None:
    answer = evaluate(
        _host_with_tabs(),
        {
            "func": "check_include_exclude",
            "result": {"type": "active_tab_info"},
            "expected": {"type": "rule", "rules": {"include": ["'content': 'Hello sandbox"]}},
        },
    )
    assert answer["metrics"][0]["result"]["value"]["content"] == "Hello sandbox\nPress me"


def test_open_tabs_info_lists_every_tab() -> None:
    answer = evaluate(
        _host_with_tabs(),
        {
            "func": "check_include_exclude",
            "result": {"type": "open_tabs_info"},
            "expected": {"type": "rule", "rules": {"include": ["about:blank", "page.html"]}},
        },
    )
    assert answer["score"] == 1.0
    assert answer["metrics"][0]["result"]["value"] == [
        {"title": "Local page", "url": TABS[0].url},
        {"title": "New Tab", "url": "about:blank"},
    ]


@pytest.mark.parametrize("tabs", [None, []])
def test_no_chromium_or_no_tab_scores_0(tabs: list[BrowserTab] | None) -> None:
    host = FakeHost()
    host.tabs = tabs
    answer = evaluate(
        host,
        {
            "func": "exact_match",
            "result": {"type": "chromium_page", "field": "url"},
            "expected": {"type": "literal", "value": "about:blank"},
        },
    )
    assert answer["score"] == 0.0
    assert answer["metrics"][0]["result"]["missing"] is True


# -- infeasible --------------------------------------------------------------------------


def test_an_infeasible_task_scores_1_only_when_the_agent_gave_up() -> None:
    host = FakeHost()
    assert evaluate(host, {"func": "infeasible"}) == {
        "score": 0.0,
        "conj": "and",
        "infeasible": True,
        "agent_failed": False,
    }
    host.status = {"status": "failed", "reason": "there is no such menu"}
    assert _score(host, {"func": "infeasible"}) == 1.0


def test_giving_up_on_a_feasible_task_scores_0() -> None:
    host = FakeHost()
    host.clip = "done"
    evaluator = {
        "func": "exact_match",
        "result": {"type": "clipboard"},
        "expected": {"type": "literal", "value": "done"},
    }
    assert _score(host, evaluator) == 1.0
    host.status = {"status": "failed"}
    answer = evaluate(host, evaluator)
    assert answer["score"] == 0.0
    assert answer["agent_failed"] is True


# -- download -------------------------------------------------------------------------------


def test_download_fetches_each_file_as_the_user_with_a_byte_cap() -> None:
    host = FakeHost()
    step = {
        "type": "download",
        "parameters": {"files": [{"url": "https://example.org/a.csv", "path": "~/a.csv"}]},
    }
    host.run = lambda command, timeout: CommandOutput("123\n", "", 0)  # type: ignore[method-assign]
    done = run_steps(host, [step])
    assert done == [
        {
            "type": "download",
            "files": [{"url": "https://example.org/a.csv", "path": "~/a.csv", "size": 123}],
        }
    ]


def test_download_passes_the_url_path_and_cap_to_the_program() -> None:
    host = FakeHost()
    step = {
        "type": "download",
        "parameters": {"files": {"url": "http://h/x y", "path": "/tmp/x"}, "timeout": 7},
    }
    run_steps(host, [step], timeout=100)
    command = next(entry for kind, entry in host.log if kind == "run")
    assert command.startswith("python3 -I -c ")
    assert command.endswith(f" 'http://h/x y' /tmp/x {MAX_DOWNLOAD_BYTES} 7")


def test_a_failed_download_names_the_step_and_the_reason() -> None:
    host = FakeHost()
    reason = "cannot download https://example.org/a: <urlopen error [Errno -3] name resolution>"
    host.run = lambda command, timeout: CommandOutput("", reason + "\n", 1)  # type: ignore[method-assign]
    step = {
        "type": "download",
        "parameters": {"files": [{"url": "https://example.org/a", "path": "a"}]},
    }
    with pytest.raises(ToolFailed) as caught:
        run_steps(host, [step])
    assert caught.value.message == f"steps.0 (download) failed: {reason}"


@pytest.mark.parametrize(
    ("files", "field"),
    [
        ([{"url": "file:///etc/passwd", "path": "a"}], "steps.0.parameters.files.0.url"),
        ([{"url": "https://x/"}], "steps.0.parameters.files.0.path"),
        ([], "steps.0.parameters.files"),
    ],
)
def test_a_bad_download_is_refused_before_anything_runs(files: Any, field: str) -> None:
    host = FakeHost()
    with pytest.raises(InvalidParams) as caught:
        run_steps(
            host,
            [
                {"type": "execute", "parameters": {"command": "true"}},
                {"type": "download", "parameters": {"files": files}},
            ],
        )
    assert caught.value.field == field.replace("steps.0", "steps.1")
    assert host.log == []  # nothing ran, not even the step before


# -- the optional vm-full image -------------------------------------------------------------


def test_vm_full_is_declared_once_and_built_on_the_desktop_of_its_namespace(
    tmp_path: Path,
) -> None:
    assert VM.optional_images == {"vm-full": FULL_IMAGE}
    assert VM.image_for(VmConfig()) == "desktop"
    assert VM.image_for(VmConfig(apps="full")) == FULL_IMAGE
    runtime = DockerRuntime(threads=1)
    try:
        images = ImageService(runtime, REPO_IMAGES, "h-test", wheel_cache=tmp_path)
        assert images.parent(FULL_IMAGE) == "desktop"
        assert images.parent("desktop") is None
        context = images.context(FULL_IMAGE)
    finally:
        runtime.close()
    assert context.buildargs == {NAMESPACE_ARG: "h-test"}
    dockerfile = (REPO_IMAGES / FULL_IMAGE / "Dockerfile").read_text()
    for package in (
        "libreoffice-writer",
        "libreoffice-calc",
        "libreoffice-impress",
        "gimp",
        "vlc",
        "thunderbird",
        "--no-install-recommends",
    ):
        assert package in dockerfile


def test_images_build_takes_vm_full_by_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    async def build(self: ImageService, name: str, on_progress: object = None) -> None:
        built.append(name)

    monkeypatch.setattr(ImageService, "build", build)
    monkeypatch.setattr(cli, "_settings", lambda args: Settings())
    cli._images_build(argparse.Namespace(resources=["vm-full"], config=None, push=None))
    assert built == [FULL_IMAGE]
    built.clear()
    cli._images_build(argparse.Namespace(resources=[], config=None, push=None))
    assert FULL_IMAGE not in built
    assert "desktop" in built
    with pytest.raises(ValueError, match="vm-full"):
        cli._images_build(argparse.Namespace(resources=["vm-fuller"], config=None, push=None))


# -- chrome_open_tabs -------------------------------------------------------------------------


def test_chrome_open_tabs_launches_chromium_with_the_urls() -> None:
    host = FakeHost()
    step = {"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["file:///a b", "x.org"]}}
    (done,) = run_steps(host, [step])
    assert done["urls"] == ["file:///a b", "x.org"]
    assert ("launch", "chromium 'file:///a b' x.org") in host.log


@pytest.mark.parametrize(
    ("urls", "field"),
    [
        ([], "steps.0.parameters.urls_to_open"),
        ("https://x.org", "steps.0.parameters.urls_to_open"),
        (
            ["https://x.org", "--remote-debugging-address=0.0.0.0"],
            "steps.0.parameters.urls_to_open.1",
        ),
        ([""], "steps.0.parameters.urls_to_open.0"),
    ],
)
def test_chrome_open_tabs_refuses_what_is_not_a_url_list(urls: Any, field: str) -> None:
    host = FakeHost()
    with pytest.raises(InvalidParams) as caught:
        run_steps(host, [{"type": "chrome_open_tabs", "parameters": {"urls_to_open": urls}}])
    assert caught.value.field == field
    assert host.log == []


# -- page_info, active_url_from_accessTree, chrome_close_tabs --------------------------------


def test_page_info_reads_the_url_in_a_tab_of_its_own() -> None:
    host = _host_with_tabs()
    host.sites["https://example.org/"] = {
        "title": "Example",
        "url": "https://example.org/",
        "content": "<html><h1>Example Domain</h1></html>",
    }
    evaluator = {
        "func": "check_include_exclude",
        "result": {"type": "page_info", "url": "https://example.org/", "timeout": 12},
        "expected": {"type": "rule", "rules": {"include": ["Example Domain"]}},
    }
    assert _score(host, evaluator) == 1.0
    assert ("open_page", ("https://example.org/", 12)) in host.log
    host.tabs = None  # no Chromium: missing, 0
    assert _score(host, evaluator) == 0.0


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "evaluator.result.url"),
        ({"url": " "}, "evaluator.result.url"),
        ({"url": 3}, "evaluator.result.url"),
        ({"url": "http://x/", "timeout": 31}, "evaluator.result.timeout"),
    ],
)
def test_page_info_refuses_a_bad_config_naming_the_field(
    config: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        evaluate(FakeHost(), {"func": "exact_match", "result": {"type": "page_info", **config}})
    assert caught.value.field == field


ACTIVE = ' st:active="true"'


def _browser_tree(*windows: tuple[str, bool]) -> str:
    """An XML tree as `vm.accessibility_tree` writes it: a Chromium window per
    (address bar text, active), and an editor with an entry of the same name."""
    st = 'xmlns:st="https://accessibility.ubuntu.example.org/ns/state"'
    frames = "".join(
        f'<frame name="w"{ACTIVE if active else ""}><tool-bar>'
        f'<entry name="Address and search bar">{text}</entry></tool-bar></frame>'
        for text, active in windows
    )
    return (
        f"<desktop-frame {st}>"
        '<application name="Mousepad"><frame><entry name="Address and search bar">'
        "evil.example</entry></frame></application>"
        f'<application name="Chromium">{frames}</application></desktop-frame>'
    )


def _active_url(host: FakeHost, **config: Any) -> Any:
    answer = evaluate(
        host,
        {
            "func": "exact_match",
            "result": {"type": "active_url_from_accessTree", **config},
            "expected": {"type": "literal", "value": "x"},
        },
    )
    return answer["metrics"][0]["result"].get("value")


def test_active_url_reads_chromiums_address_bar_with_the_prefix() -> None:
    host = FakeHost()
    host.tree = _browser_tree(("example.org/docs", False))
    assert _active_url(host) == "https://example.org/docs"
    assert _active_url(host, goto_prefix="http://www.") == "http://www.example.org/docs"
    options = dict(host.log)["tree"]
    assert options["format"] == "xml"
    assert options["max_nodes"] == 10_000
    # A URL that shows its scheme keeps it; a port is not a scheme.
    host.tree = _browser_tree(("file:///home/sandbox/a.html", False))
    assert _active_url(host) == "file:///home/sandbox/a.html"
    host.tree = _browser_tree(("localhost:8000/x", False))
    assert _active_url(host) == "https://localhost:8000/x"


def test_active_url_prefers_the_active_window_and_is_missing_without_chromium() -> None:
    host = FakeHost()
    host.tree = _browser_tree(("first.org", False), ("second.org", True))
    assert _active_url(host) == "https://second.org"
    host.tree = _browser_tree()
    assert _active_url(host) is None
    host.tree = "<desktop-frame><application name='Chromium'>"
    with pytest.raises(ToolFailed, match="not XML"):
        _active_url(host)


def test_chrome_close_tabs_closes_the_first_tab_showing_each_url() -> None:
    host = FakeHost()
    host.tabs = [
        BrowserTab("A", "https://www.Example.org/", "Example"),
        BrowserTab("B", "https://example.org/", "Example again"),
        BrowserTab("C", "file:///home/sandbox/a.html", "A"),
    ]
    step = {
        "type": "chrome_close_tabs",
        "parameters": {"urls_to_close": ["https://example.org", "http://nowhere.org/"]},
    }
    (done,) = run_steps(host, [step], timeout=0.3)  # the wait is bounded by the setup's
    assert done == {
        "type": "chrome_close_tabs",
        "closed": ["https://www.Example.org/"],
        "not_open": ["http://nowhere.org/"],
    }
    assert [tab.id for tab in host.tabs] == ["B", "C"]
    # It waited (bounded) for the tab that never came.
    assert ("sleep", 0.5) in host.log


def test_chrome_close_tabs_without_chromium_fails_and_bad_urls_are_refused() -> None:
    step = {"type": "chrome_close_tabs", "parameters": {"urls_to_close": ["https://x.org"]}}
    with pytest.raises(ToolFailed, match="Chromium is not running"):
        run_steps(FakeHost(), [step], timeout=0.01)
    with pytest.raises(InvalidParams) as caught:
        run_steps(FakeHost(), [{"type": "chrome_close_tabs", "parameters": {"urls_to_close": []}}])
    assert caught.value.field == "steps.0.parameters.urls_to_close"


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("https://www.example.org/", "https://example.org", True),
        ("example.org", "http://EXAMPLE.org/", True),
        ("example.org", "https://example.org", False),
        ("https://example.org/a", "https://example.org/a/", False),
        ("https://example.org/?q=1", "https://example.org/?q=2", False),
        ("about:blank", "about:blank", True),
        ("http://[", "http://[", True),
    ],
)
def test_urls_compare_as_osworld_matches_tabs(first: str, second: str, same: bool) -> None:
    assert browser.same_url(first, second) is same
