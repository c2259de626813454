"""Every committed history replays against the current workflow code (all of `worker.WORKFLOWS`).

A failure here means a deployed change would break workflows already running: guard the change with
`workflow.patched()` instead of regenerating the history.

Histories live in `tests/replay/histories/`, one JSON file per run, named `<workflow_type>__<case>.json`
(e.g. `CfastCustomerWorkflow__happy_path.json`); every `*.json` there is replayed. Record new ones with
`.venv/bin/python -m tests.replay.record_histories` (see that module).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from tests.replay._changed_workflow import ReorderedCfastCustomerWorkflow
from worker import WORKFLOWS

HISTORIES = Path(__file__).resolve().parent / "histories"
FILES = sorted(HISTORIES.glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def started_type(path: Path) -> str:
    first = json.loads(path.read_text(encoding="utf-8"))["events"][0]
    return str(first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def test_histories_are_committed() -> None:
    assert FILES, f"no history in {HISTORIES}"
    for path in FILES:
        workflow_type, sep, case = path.stem.partition("__")
        assert sep and workflow_type and case, f"{path.name}: expected <workflow_type>__<case>.json"
        assert started_type(path) == workflow_type, f"{path.name} holds a {started_type(path)} history"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_history_replays_with_current_code(path: Path) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


async def test_a_changed_command_sequence_fails_replay() -> None:
    replayer = Replayer(workflows=[ReorderedCfastCustomerWorkflow], data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES / "CfastCustomerWorkflow__happy_path.json"))
