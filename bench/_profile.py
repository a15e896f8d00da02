"""py-spy sampling of a benchmark's processes: a flame graph per process and
the functions that cost the most, as JSON (docs/benchmarks.md, "Profiles").

``sampled(pids, out_dir)`` records every pid while the block runs (py-spy
``record --nonblocking --gil``: only the thread holding the GIL, i.e. where
the Python CPU goes; the target is not paused, so the figures stay
comparable with an unprofiled run) and writes ``<name>.svg`` and
``<name>.txt`` (collapsed stacks) into ``out_dir``; :func:`top` reads the
collapsed stacks back: self and inclusive share of samples per function.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

RATE = 200  # samples per second per process


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: make venv (the bench extra has it)")
    return found


@contextlib.contextmanager
def sampled(pids: Mapping[str, int], out_dir: Path) -> Iterator[None]:
    """Record each named pid while the block runs (see module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = _py_spy()
    procs: list[subprocess.Popen[bytes]] = []
    for name, pid in pids.items():
        for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
            args = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking", "--gil"]
            args += ["--format", fmt, "-o", str(out_dir / f"{name}.{suffix}")]
            procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _frame(f: str) -> str:
    """``fn (path/to/module.py:12)`` -> ``module.py:fn``."""
    name, _, where = f.partition(" (")
    return f"{Path(where.split(':')[0]).name}:{name}" if where else name


def top(collapsed: Path, n: int = 15) -> dict[str, Any]:
    """Share of samples per function in a collapsed-stack file: ``self`` (the
    innermost frame) and ``inclusive`` (anywhere on the stack)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    if not total:
        return {}

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(v / total, 3)) for f, v in c.most_common(n)]

    return {"samples": total, "self": share(own), "inclusive": share(incl)}
