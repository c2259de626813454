"""`simflow bench topup` at its smallest: the whole stack, both baselines and a small burst, then the summary
line `make bench` ends with. Checks its format and that the run was sound (every top-up completed, the
invariants hold), never its timings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"topup_vs_bare_throughput_ratio=(?P<bare>\d+\.\d\d) "
    r"topup_vs_minimal_throughput_ratio=(?P<minimal>\d+\.\d\d) "
    r"topup_p50_overhead_ms=-?\d+ "
    r"worker_cpu_ms_per_topup=(?P<cpu>\d+) "
    r"burst_4_drain_s=\d+\.\d "
    r"invariants=(?P<verdict>ok|broken)"
)


@pytest.mark.timeout(1500)
@pytest.mark.skipif(
    os.environ.get("SIMFLOW_TEST_BACKEND") == "postgres",
    reason="the bench runs its own stack on its embedded default, whatever the test database: the SQLite run covers it",
)
def test_smallest_bench_ends_with_the_summary_line() -> None:
    # A few minutes on a quiet machine; far more when other test runs share it.
    run = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.topup_bench"),
            *("--sequential", "2", "--saturated", "4", "--saturation", "2", "--burst", "4", "--lines", "2"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=1320)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGINT)  # the bench stops its stack on the way out
        stdout, stderr = run.communicate(timeout=120)
    output = stdout.strip().splitlines()
    context = f"exit {run.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    assert output, context
    summary = SUMMARY.fullmatch(output[-1])
    assert summary is not None, context
    assert summary["verdict"] == "ok", context
    assert run.returncode == 0, context
    assert float(summary["bare"]) > 0 and float(summary["minimal"]) > 0, context
    assert int(summary["cpu"]) > 0, context
    assert "minimal top-up, concurrency 2 n=4" in stdout, context
    assert "burst of 4: " in stdout and "completed=4, submit errors=0" in stdout, context
