"""Every product module imports: mypy runs with `ignore_missing_imports` (for untyped libraries), so an import of
a module that was moved or removed would otherwise only show when that code path runs."""

from __future__ import annotations

import importlib
import pkgutil
import warnings

import pytest

PACKAGES = ("api", "activities", "workflows", "domain", "integrations", "infra", "starters", "simulators", "bench")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.extend(info.name for info in pkgutil.walk_packages(root.__path__, f"{package}."))
    return [*names, "worker", "simflow_cli"]


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name: str) -> None:
    with warnings.catch_warnings():
        # pyftpdlib (the local FTP server's process) still imports the deprecated asyncore.
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module(name)
