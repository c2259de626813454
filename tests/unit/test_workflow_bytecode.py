"""The worker writes the workflow packages' bytecode before it starts: the sandbox imports workflow
modules again for every workflow run, and without bytecode each import compiles the source."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infra.temporal import precompile_workflow_code


def test_workflow_package_bytecode_is_written_even_with_bytecode_writing_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "sample_flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "renewal.py").write_text("STEPS = ('charge', 'credit')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    assert precompile_workflow_code("sample_flows") is True

    compiled = sorted(p.name.split(".")[0] for p in (package / "__pycache__").glob("*.pyc"))
    assert compiled == ["__init__", "renewal"]


def test_a_package_that_does_not_compile_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "broken_flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "dunning.py").write_text("def step(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert precompile_workflow_code("broken_flows") is False


def test_the_product_workflows_compile() -> None:
    assert precompile_workflow_code("workflows") is True
