"""Temporal client construction: one place sets the data converter and the namespace."""

from __future__ import annotations

import compileall
import importlib.util

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from infra.settings import Settings


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


def workflow_ui_url(settings: Settings, workflow_id: str) -> str:
    from urllib.parse import quote

    return (
        f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{quote(workflow_id, safe='')}"
    )


def precompile_workflow_code(*packages: str) -> bool:
    """Writes the bytecode of the workflow packages. The workflow sandbox imports the workflow modules
    afresh for every workflow run it starts; with bytecode writing off (PYTHONDONTWRITEBYTECODE, set in our
    image) each of those imports would compile the source again, which cost the worker about a tenth of
    its CPU at saturation. False when a package could not be compiled (read-only tree): still correct,
    only slower."""
    ok = True
    for name in packages:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            ok = bool(compileall.compile_dir(location, quiet=2)) and ok
    return ok
