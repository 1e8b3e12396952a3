"""`format_tool_result`: the text a model sees for each of our tools' results."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.result_formatter import (
    RAGBatchSearchResult,
    ResultFormatter,
    ToolResult,
    VMResult,
    format_tool_result,
)


def reply(tool: str, data: Any, code: int = 0, message: str = "success") -> dict[str, Any]:
    resource = tool.split(":")[0] if ":" in tool else None
    meta = {"tool": tool, "resource_type": resource, "execution_time_ms": 12.5}
    return {"code": code, "message": message, "data": data, "meta": meta}


@pytest.mark.parametrize(
    ("tool", "data", "text"),
    [
        ("bash:run", {"stdout": "a\nb\n", "stderr": "", "exit_code": 0, "cwd": "/tmp"}, "a\nb"),
        (
            "bash:run",
            {"stdout": "", "stderr": "", "exit_code": 0},
            "[Command executed successfully with no output]",
        ),
        (
            "bash:run",
            {"stdout": "part\n", "stderr": "ls: nope\n", "exit_code": 2},
            "[Error] Command failed with return code 2\nError output:\nls: nope\n"
            "Standard output:\npart",
        ),
        ("bash:read_file", {"path": "/tmp/a", "content": "hello\n", "size": 6}, "hello\n"),
        ("bash:write_file", {"path": "/tmp/a", "size": 6}, "Wrote 6 bytes to /tmp/a"),
        ("code:execute", {"stdout": "42\n", "stderr": "", "return_code": 0}, "42"),
        (
            "code:execute",
            {"stdout": "", "stderr": "Traceback ...\nZeroDivisionError\n", "return_code": 1},
            "[Error] Code execution failed\nTraceback ...\nZeroDivisionError",
        ),
        (
            "rag:search",
            {"results": [], "context": "jq is a JSON processor\n"},
            "jq is a JSON processor",
        ),
        ("rag:search", {"query": "jq", "context": "  "}, "[No context found for query: jq]"),
        (
            "rag:search",
            {"results": [{"title": "jq", "text": "a JSON processor"}, {"text": "sed"}]},
            "jq\na JSON processor\n\nsed",
        ),
        ("rag:index", {"indexed": 2, "documents": 5}, '{\n  "indexed": 2,\n  "documents": 5\n}'),
    ],
)
def test_each_tool_shows_what_the_model_needs(tool: str, data: Any, text: str) -> None:
    assert format_tool_result(reply(tool, data)) == text


def test_vm_results_show_the_accessibility_tree_and_never_an_image() -> None:
    tree = "[window] Terminal\n  [text] $ ls\n"
    shot = {"image": "iVBORw0KGgo" * 1000, "size": [1024, 768], "format": "png"}

    assert (
        format_tool_result(reply("vm:click", {"x": 1, "accessibility_tree": tree})) == tree.rstrip()
    )
    shown = format_tool_result(reply("vm:screenshot", shot))
    assert "iVBOR" not in shown
    assert '"size"' in shown
    assert format_tool_result(reply("vm:done", {})) == "[No accessibility tree]"
    assert format_tool_result(reply("vm:run_command", {"stdout": "ok\n", "exit_code": 0})) == "ok"


def test_batch_search_shows_one_block_per_query() -> None:
    ours = {"results": [[{"title": "", "text": "first"}], []], "errors": [None, "query 2: empty"]}
    theirs = {"count": 2, "contexts": ["ctx one", ""]}

    assert format_tool_result(reply("rag:batch_search", ours)) == (
        "[Query 1]\nfirst\n\n[Query 2]\n[Error] query 2: empty"
    )
    assert format_tool_result(reply("rag:batch_search", theirs)) == (
        "[Query 1]\nctx one\n\n[Query 2]\n[No context found]"
    )
    assert isinstance(ResultFormatter.format(reply("rag:batch_search", ours)), RAGBatchSearchResult)


@pytest.mark.parametrize(
    ("tool", "text"),
    [
        ("bash:run", "[Error] command did not finish within 5s"),
        ("code:execute", "[Error] command did not finish within 5s"),
        ("vm:click", "[Error] command did not finish within 5s"),
        ("rag:search", "[RAG search failed] command did not finish within 5s"),
        ("vm-clik", "[Error] command did not finish within 5s"),  # no formatter: still text
    ],
)
def test_a_failed_call_reads_as_its_error(tool: str, text: str) -> None:
    failed = reply(tool, None, code=2002, message="command did not finish within 5s")

    assert format_tool_result(failed) == text


def test_verbose_adds_timings_and_the_working_directory() -> None:
    data = {"stdout": "hi\n", "stderr": "", "exit_code": 0, "cwd": "/home/sandbox"}

    text = format_tool_result(reply("bash:run", data), verbose=True)

    assert text == "hi\n\nWorking directory: /home/sandbox\nExecution time: 12.50ms"


def test_results_keep_agentflows_attributes() -> None:
    result = ResultFormatter.format(reply("vm:click", {"x": 3}))

    assert isinstance(result, VMResult)
    assert (result.success, result.tool_name, result.execution_time) == (True, "vm:click", 12.5)
    assert result.raw_data == {"x": 3}
    assert result.get_metadata()["resource_type"] == "vm"


def test_an_unknown_tools_success_needs_a_registered_formatter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ResultFormatter, "FORMATTER_MAP", dict(ResultFormatter.FORMATTER_MAP))

    class Echo(ToolResult):
        def to_str(self, verbose: bool = False) -> str:
            return str(self.raw_data["said"])

    with pytest.raises(ValueError, match="no formatter for tool 'web:search'"):
        format_tool_result(reply("web:search", {"said": "hi"}))
    ResultFormatter.register_formatter("web", Echo)
    assert format_tool_result(reply("web:search", {"said": "hi"})) == "hi"
    with pytest.raises(TypeError, match="subclass of ToolResult"):
        ResultFormatter.register_formatter("web", dict)  # type: ignore[arg-type]


def test_what_is_not_an_envelope_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 'code' and 'meta'"):
        format_tool_result({"stdout": "hi"})
