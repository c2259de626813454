"""The bench's py-spy summary: own time goes to the innermost frame, cumulative time to every frame of a
stack once (recursion counted once), line numbers folded into their function."""

from __future__ import annotations

from bench.profile_summary import hottest

COLLAPSED = """\
main (worker.py:10);run (asyncio/runners.py:44);render (weasyprint/__init__.py:5) 6
main (worker.py:10);run (asyncio/runners.py:44);render (weasyprint/__init__.py:7) 2
main (worker.py:10);walk (tree.py:3);walk (tree.py:4) 2
not a stack line
"""


def test_own_and_cumulative_shares() -> None:
    lines = hottest(COLLAPSED, top=3).splitlines()
    assert lines[0] == "profile: 10 samples"
    own = lines[lines.index("top 3 by own time:") + 1 : lines.index("top 3 by cumulative time:")]
    assert own == ["   80.0%  render (weasyprint/__init__.py)", "   20.0%  walk (tree.py)"]
    cumulative = lines[lines.index("top 3 by cumulative time:") + 1 :]
    assert cumulative == [
        "  100.0%  main (worker.py)",
        "   80.0%  run (asyncio/runners.py)",
        "   80.0%  render (weasyprint/__init__.py)",
    ]


def test_no_samples() -> None:
    assert hottest("") == "profile: no samples"
