"""The package's public surface is exactly what `sandbox.__all__` lists."""

from __future__ import annotations

import sandbox


def test_exports_are_sorted_and_all_importable() -> None:
    assert sandbox.__all__ == sorted(sandbox.__all__)
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is not None


def test_the_readme_imports_work() -> None:
    from sandbox import Envelope, HTTPClientConfig, HTTPServiceClient, Sandbox, SandboxConfig

    for name in (Sandbox, SandboxConfig, HTTPServiceClient, HTTPClientConfig, Envelope):
        assert name.__module__.startswith("sandbox.client")


def test_what_agentflow_pipelines_import_is_there() -> None:
    # rollout/ and synthesis/ import exactly these; their users' code as well.
    from sandbox import (
        HTTPClientConfig,
        HTTPServiceClient,
        ResultFormatter,
        Sandbox,
        SandboxConfig,
        ToolResult,
        format_tool_result,
    )
    from sandbox.tool_schemas import get_tool_schemas

    assert callable(format_tool_result)
    assert callable(get_tool_schemas)
    assert issubclass(ResultFormatter.FORMATTER_MAP["vm"], ToolResult)
    for cls in (Sandbox, SandboxConfig, HTTPServiceClient, HTTPClientConfig):
        assert cls.__name__ in {"Sandbox", "SandboxConfig", "HTTPServiceClient", "HTTPClientConfig"}


def test_submodule_exports_are_sorted() -> None:
    import sandbox.result_formatter
    import sandbox.tool_schemas

    for module in (sandbox.result_formatter, sandbox.tool_schemas):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None
