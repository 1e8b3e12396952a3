"""The package's public surface is exactly what `sandbox.__all__` lists."""

from __future__ import annotations

import sandbox


def test_exports_are_sorted_and_all_importable() -> None:
    assert sandbox.__all__ == sorted(sandbox.__all__)
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is not None


def test_the_readme_imports_work() -> None:
    from sandbox import Envelope, HTTPClientConfig, HTTPServiceClient, Sandbox

    assert Sandbox.__module__.startswith("sandbox.client")
    assert HTTPServiceClient.__module__.startswith("sandbox.client")
    assert HTTPClientConfig.__module__.startswith("sandbox.client")
    assert Envelope.__module__.startswith("sandbox.client")
