"""Temporal client construction: one place sets the data converter, the namespace and the transport.

The transport is the SDK's environment configuration (`temporalio.envconfig`): a TOML profile
(`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`) and the `TEMPORAL_*` variables, such as
`TEMPORAL_TLS_CLIENT_CERT_PATH` / `TEMPORAL_TLS_CLIENT_KEY_PATH` / `TEMPORAL_TLS_SERVER_CA_CERT_PATH` /
`TEMPORAL_TLS_SERVER_NAME` for mTLS to a self-hosted frontend, or `TEMPORAL_API_KEY` for Temporal Cloud. So TLS,
an API key or Cloud are settings, not code. simflow's own settings keep the last word on the address and the
namespace, which the portal's links and the embedded default also use.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from infra.settings import Settings


def client_connect_config(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of `Client.connect`: the environment configuration's profile, then our settings."""
    config: dict[str, Any] = dict(
        ClientConfig.load_client_connect_config(override_env_vars=dict(os.environ if environ is None else environ))
    )
    config["target_host"] = settings.temporal_address
    config["namespace"] = settings.temporal_namespace
    return config


async def connect_temporal(settings: Settings, environ: Mapping[str, str] | None = None) -> Client:
    return await Client.connect(**client_connect_config(settings, environ), data_converter=pydantic_data_converter)


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
