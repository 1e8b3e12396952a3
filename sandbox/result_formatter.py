"""The text a model sees for a tool result (AgentFlow's ``format_tool_result``).

An agent loop turns every `execute` envelope into a tool message: the part of
the result the model needs, without metadata or base64 screenshots::

    text = format_tool_result(await sb.execute("bash:run", {"command": "ls"}))

`ResultFormatter` picks a `ToolResult` class by the envelope's ``meta.tool``
(``rag:search``), else its ``meta.resource_type`` (``bash``, ``code``, ``vm``,
``rag``); `ResultFormatter.register_formatter` adds or replaces one. A failed
call (``code`` not 0) reads ``[Error] <message>`` or the like. A successful
result of a tool no formatter knows raises `ValueError`, as in AgentFlow, so
a new tool gets its text on purpose.

What each shows: ``bash:run`` its stdout, or the exit code with stderr and
stdout when it failed; ``bash:read_file`` the content; ``code:execute`` stdout,
or stderr when it failed; ``vm:*`` the ``accessibility_tree`` when the result
carries one (the only observation AgentFlow shows the model), otherwise the
result's fields without images; ``rag:search`` the joined ``context``;
``rag:batch_search`` one block per query.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "BashResult",
    "CodeExecutionResult",
    "RAGBatchSearchResult",
    "RAGResult",
    "RAGSearchResult",
    "ResultFormatter",
    "ToolResult",
    "VMResult",
    "format_tool_result",
]

# Result fields that hold images: never text for a model.
_IMAGE_FIELDS = frozenset({"image", "screenshot", "png", "jpeg", "image_base64"})


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


class ToolResult(ABC):
    """One tool result, turned into model-facing text by `to_str`.

    Args:
        raw_data: The envelope's ``data``.
        metadata: ``success``, ``code``, ``message``, ``tool``, ``resource_type``,
            ``execution_time_ms``, ``session_id``, ``trace_id``.
    """

    def __init__(self, raw_data: Any, metadata: Mapping[str, Any] | None = None) -> None:
        self.raw_data: dict[str, Any] = dict(raw_data) if isinstance(raw_data, Mapping) else {}
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.success = bool(self.metadata.get("success", True))
        self.tool_name = str(self.metadata.get("tool") or "unknown")
        self.execution_time = float(self.metadata.get("execution_time_ms") or 0)

    @abstractmethod
    def to_str(self, verbose: bool = False) -> str:
        """The text for the model; `verbose` adds timings and such."""

    def get_metadata(self) -> dict[str, Any]:
        """The metadata this result was made with."""
        return self.metadata

    def _error(self, fallback: str, prefix: str = "[Error]") -> str:
        return f"{prefix} {self.metadata.get('message') or fallback}"

    def _timing(self) -> list[str]:
        return [f"Execution time: {self.execution_time:.2f}ms"] if self.execution_time else []


def _exit_status(data: Mapping[str, Any]) -> int | None:
    """``return_code`` (AgentFlow, ``code:execute``) or ``exit_code`` (``bash:run``)."""
    status = data.get("return_code", data.get("exit_code", 0))
    return status if isinstance(status, int) else None


def _command_text(data: Mapping[str, Any], what: str) -> list[str]:
    stdout = str(data.get("stdout") or "")
    stderr = str(data.get("stderr") or "")
    status = _exit_status(data)
    if status == 0:
        quiet = f"[{what} executed successfully with no output]"
        return [stdout.rstrip() if stdout.strip() else quiet]
    failed = "did not finish" if status is None else f"failed with return code {status}"
    lines = [f"[Error] {what} {failed}"]
    if stderr.strip():
        lines.append(f"Error output:\n{stderr.rstrip()}")
    if stdout.strip():
        lines.append(f"Standard output:\n{stdout.rstrip()}")
    return lines


class BashResult(ToolResult):
    """``bash:*``: stdout of a command (stderr and code when it failed), a file read."""

    def to_str(self, verbose: bool = False) -> str:
        if not self.success:
            return self._error("Command execution failed")
        data = self.raw_data
        if "stdout" in data or "stderr" in data:
            lines = _command_text(data, "Command")
        elif "content" in data:  # read_file
            lines = [str(data["content"]) or "[Empty file]"]
        elif "path" in data:  # write_file
            lines = [f"Wrote {data.get('size', 0)} bytes to {data['path']}"]
        else:
            lines = [_json(data)]
        if verbose:
            extra = [f"Working directory: {data['cwd']}"] if data.get("cwd") else []
            extra += self._timing()
            if extra:
                lines.append("\n" + "\n".join(extra))
        return "\n".join(lines)


class CodeExecutionResult(ToolResult):
    """``code:execute``: stdout, or stderr when the program failed."""

    def to_str(self, verbose: bool = False) -> str:
        if not self.success:
            return self._error("Code execution failed")
        data = self.raw_data
        stdout = str(data.get("stdout") or "")
        if _exit_status(data) == 0:
            quiet = "[Code executed successfully with no output]"
            lines = [stdout.rstrip() if stdout.strip() else quiet]
        else:
            lines = ["[Error] Code execution failed"]
            stderr = str(data.get("stderr") or "")
            if stderr.strip():
                lines.append(stderr.rstrip())
        if verbose:
            extra = []
            if data.get("execution_time_ms"):
                extra.append(f"Execution time: {float(data['execution_time_ms']):.2f}ms")
            if data.get("memory_used_mb"):
                extra.append(f"Memory used: {float(data['memory_used_mb']):.2f}MB")
            if extra:
                lines.append("\n" + "\n".join(extra))
        return "\n".join(lines)


class VMResult(ToolResult):
    """``vm:*``: the accessibility tree; without one, the result's fields but images."""

    def to_str(self, verbose: bool = False) -> str:
        if not self.success:
            return self._error("VM operation failed")
        tree = self.raw_data.get("accessibility_tree")
        if isinstance(tree, str) and tree.strip():
            return tree.rstrip()
        if "stdout" in self.raw_data:  # run_command, pyautogui
            return "\n".join(_command_text(self.raw_data, "Command"))
        fields = {key: value for key, value in self.raw_data.items() if key not in _IMAGE_FIELDS}
        return _json(fields) if fields else "[No accessibility tree]"


class RAGSearchResult(ToolResult):
    """``rag:search``: the retrieved context (AgentFlow's reference format)."""

    def to_str(self, verbose: bool = False) -> str:
        query = str(self.raw_data.get("query") or "")
        if not self.success:
            where = f" for query: {query}" if query else ""
            return self._error("RAG search failed", f"[RAG search failed{where}]")
        context = _context(self.raw_data.get("context"), self.raw_data.get("results"))
        if not context.strip():
            return f"[No context found for query: {query}]" if query else "[No context found]"
        lines = [context.rstrip()]
        if verbose and query:
            lines.append(f"\n[Query: {query}]")
        return "\n".join(lines)


def _context(context: Any, results: Any) -> str:
    """`context` when the tool joined one, else the passages of `results` joined."""
    if isinstance(context, str):
        return context
    passages = []
    for hit in results if isinstance(results, list) else []:
        if isinstance(hit, Mapping):
            title, text = str(hit.get("title") or ""), str(hit.get("text") or "")
            passages.append(f"{title}\n{text}" if title else text)
    return "\n\n".join(passages)


class RAGBatchSearchResult(ToolResult):
    """``rag:batch_search``: one block per query, its context or its error."""

    def to_str(self, verbose: bool = False) -> str:
        if not self.success:
            return self._error("RAG batch search failed", "[RAG batch search failed]")
        contexts = self.raw_data.get("contexts")
        results = self.raw_data.get("results")
        errors = self.raw_data.get("errors")
        count = len(contexts) if isinstance(contexts, list) else len(results or [])
        blocks = []
        for number in range(count):
            error = errors[number] if isinstance(errors, list) and number < len(errors) else None
            if isinstance(contexts, list):
                text = _context(contexts[number], None)
            else:
                text = _context(None, results[number] if isinstance(results, list) else None)
            body = f"[Error] {error}" if error else (text.rstrip() or "[No context found]")
            blocks.append(f"[Query {number + 1}]\n{body}")
        return "\n\n".join(blocks) if blocks else "[No context found]"


class RAGResult(ToolResult):
    """Other ``rag:*`` tools (``index``, ``stats``): their fields as JSON."""

    def to_str(self, verbose: bool = False) -> str:
        if not self.success:
            return self._error("RAG operation failed")
        return _json(self.raw_data)


class _FailedCall(ToolResult):
    """A failed call of a tool no formatter knows (a misspelt name, ...)."""

    def to_str(self, verbose: bool = False) -> str:
        return self._error("Tool call failed")


class ResultFormatter:
    """Picks the `ToolResult` class of an envelope and formats it.

    `FORMATTER_MAP` maps a full tool name (``rag:search``) or a resource type
    (``vm``) to its class; the full name is looked up first.
    """

    FORMATTER_MAP: ClassVar[dict[str, type[ToolResult]]] = {
        "bash": BashResult,
        "code": CodeExecutionResult,
        "vm": VMResult,
        "rag": RAGResult,
        "rag:search": RAGSearchResult,
        "rag:batch_search": RAGBatchSearchResult,
    }

    @classmethod
    def format(cls, response: Mapping[str, Any]) -> ToolResult:
        """The `ToolResult` for an `execute` envelope.

        Raises:
            ValueError: `response` lacks ``code`` or ``meta``, or it is a success of
                a tool no formatter is registered for.
        """
        if "code" not in response or "meta" not in response:
            raise ValueError(
                "not a tool result envelope: expected 'code' and 'meta', "
                f"got {sorted(map(str, response))}"
            )
        raw_meta = response.get("meta")
        meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
        code = response.get("code")
        tool = str(meta.get("tool") or "")
        resource = str(meta.get("resource_type") or "") or tool.partition(":")[0]
        metadata = {
            "success": code == 0,
            "code": code,
            "message": response.get("message", ""),
            "tool": tool,
            "resource_type": resource,
            "execution_time_ms": meta.get("execution_time_ms", 0),
            "session_id": meta.get("session_id"),
            "trace_id": meta.get("trace_id"),
        }
        formatter = cls.FORMATTER_MAP.get(tool) or cls.FORMATTER_MAP.get(resource)
        if formatter is None:
            if code != 0:
                formatter = _FailedCall
            else:
                raise ValueError(
                    f"no formatter for tool {tool!r} (resource type {resource!r}); write a "
                    "ToolResult subclass and register it with "
                    f"ResultFormatter.register_formatter({(tool or resource)!r}, YourResult)"
                )
        return formatter(response.get("data"), metadata)

    @classmethod
    def format_to_str(cls, response: Mapping[str, Any], verbose: bool = False) -> str:
        """The text of an `execute` envelope for the model (see `format`)."""
        return cls.format(response).to_str(verbose=verbose)

    @classmethod
    def register_formatter(cls, tool_type: str, formatter_class: type[ToolResult]) -> None:
        """Use `formatter_class` for a tool (``"rag:search"``) or resource type (``"vm"``).

        Raises:
            TypeError: `formatter_class` is not a `ToolResult` subclass.
        """
        if not (isinstance(formatter_class, type) and issubclass(formatter_class, ToolResult)):
            raise TypeError(f"{formatter_class!r} must be a subclass of ToolResult")
        cls.FORMATTER_MAP[tool_type] = formatter_class


def format_tool_result(response: Mapping[str, Any], verbose: bool = False) -> str:
    """The text a model sees for an `execute` envelope.

    Args:
        response: The envelope `Sandbox.execute` returned.
        verbose: Add timings, the working directory and such.

    Raises:
        ValueError: Not an envelope, or a success of a tool without a formatter.
    """
    return ResultFormatter.format_to_str(response, verbose=verbose)
