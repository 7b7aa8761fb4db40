"""What the scripts under ``benchmarks/`` share: a results file per seed in the reference runs' format, and a
command line that skips seeds already measured.

A benchmark is an experiment too long or too wide for a notebook (every criterion under every allocation, a grid of
choices). Each seed's rows (``report.number`` / ``report.paired``) go to ``results/runs/<name>/lab-seed<N>.json``,
so ``report.evidence`` aggregates them over seeds exactly like a notebook's reference runs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from . import report


def save(name: str, rows: list[dict], seed: int, started: float, command: str, data=None, **run) -> Path:
    """Write one seed's results file; ``started`` is the ``time.perf_counter()`` of the run's start, ``run`` any
    settings worth recording beside the wall time, date and command."""
    seconds = time.perf_counter() - started
    path = report.run_path(name, "lab", seed)
    os.environ[report.RUN_OUT] = str(path)
    try:
        return report.save(name, rows, scale="lab", seed=seed, seconds=round(seconds), data=data,
                           run={"wall_seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "command": command, **run})
    finally:
        del os.environ[report.RUN_OUT]


def main(name: str, run: Callable[[int], Path], description: str, argv=None, seeds: Sequence[int] = (0,)) -> int:
    """``--seeds`` to run (``seeds`` by default) and ``--force`` to redo one whose results file exists."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--force", action="store_true", help="rerun seeds whose results file exists")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        if report.run_path(name, "lab", seed).exists() and not args.force:
            print(f"seed {seed}: results exist (--force reruns it)")
            continue
        print("wrote", run(seed))
    return 0
