"""The hottest functions of a py-spy profile in raw (collapsed stacks) form, by own and by cumulative time.

python -m bench.profile_summary PROFILE.txt [TOP]
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# A py-spy frame: "function (path/to/file.py:123)"; the line is dropped so a function's samples add up.
_LINE = re.compile(r":\d+\)$")


def _frame(raw: str) -> str:
    name = _LINE.sub(")", raw.strip())
    return re.sub(r"\(.*?(site-packages/|/wt/[^/]+/)", "(", name)


def hottest(collapsed: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        total += samples
        own[frames[-1]] += samples
        for frame in dict.fromkeys(frames):  # once per stack, even when recursive
            cumulative[frame] += samples
    if not total:
        return "profile: no samples"
    out = [f"profile: {total} samples"]
    for title, counter in (("own time", own), ("cumulative time", cumulative)):
        out.append(f"top {top} by {title}:")
        out.extend(f"  {n / total:6.1%}  {frame}" for frame, n in counter.most_common(top))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(hottest(Path(args[0]).read_text(), int(args[1]) if len(args) > 1 else 25))


if __name__ == "__main__":
    main()
