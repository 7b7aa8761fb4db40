"""What the scripts under ``benchmarks/`` share: a results file per seed in the reference runs' format, and a
command line that skips seeds already measured.

A benchmark is an experiment too long or too wide for a notebook (every criterion under every allocation, a grid of
choices). Each seed's rows (``report.number`` / ``report.paired``) go to ``results/runs/<name>/<scale>-seed<N>.json``,
so ``report.evidence`` aggregates them over seeds exactly like a notebook's reference runs. A benchmark that has a
full-scale recipe (the notebooks' ``SCALE = "full"``: whole epochs, larger searches) offers ``--scale full``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import report


def save(name: str, rows: list[dict], seed: int, started: float, command: str, data=None, scale: str = "lab",
         **run) -> Path:
    """Write one seed's results file at ``scale``; ``started`` is the ``time.perf_counter()`` of the run's start,
    ``run`` any settings worth recording beside the wall time, date and command."""
    seconds = time.perf_counter() - started
    path = report.run_path(name, scale, seed)
    os.environ[report.RUN_OUT] = str(path)
    try:
        return report.save(name, rows, scale=scale, seed=seed, seconds=round(seconds), data=data,
                           run={"wall_seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "command": command, **run})
    finally:
        del os.environ[report.RUN_OUT]


def main(name: str, run: Callable[..., Path], description: str, argv=None, seeds: Sequence[int] = (0,),
         scales: Sequence[str] = ("lab",)) -> int:
    """``--seeds`` to run (``seeds`` by default) and ``--force`` to redo one whose results file exists. A benchmark
    with more than one recipe lists them in ``scales`` (``("lab", "full")``): it then takes ``--scale`` (the first
    by default) and ``run`` is called as ``run(seed, scale)``, else as ``run(seed)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--force", action="store_true", help="rerun seeds whose results file exists")
    if len(scales) > 1:
        parser.add_argument("--scale", choices=list(scales), default=scales[0],
                            help="which recipe (results go to results/runs/<name>/<scale>-seed<N>.json)")
    args = parser.parse_args(argv)
    scale = getattr(args, "scale", scales[0])
    for seed in args.seeds:
        if report.run_path(name, scale, seed).exists() and not args.force:
            print(f"seed {seed}: {scale} results exist (--force reruns it)")
            continue
        print("wrote", run(seed, scale) if len(scales) > 1 else run(seed))
    return 0


def choose_structure(structures: Sequence[dict], label: Callable[[dict], str], removed: Callable[[dict], tuple],
                     score: Callable[[object, str], float], target: float, prefix: str, scored: str, seed: int,
                     unit: str = "%", digits: int = 1) -> tuple[dict, list[dict], dict]:
    """The structure step the choice benchmarks share: build each structure (``removed(structure)`` returns the
    built model and the fraction of storage it removes), score on validation only those that remove at least
    ``target`` (``score(model, name)``), and keep the best. The rows' quantities are ``"{prefix}, {label}: {scored}"``
    and ``"{prefix}, {label}: storage removed"``.

    Returns ``(grid, rows, winner)``: every structure's entry (its storage removed, whether it qualifies, its score),
    the rows for the results file, and the winning entry."""
    grid, rows = {}, []
    for structure in structures:
        name = label(structure)
        model, fraction = removed(structure)
        entry = {"structure": structure, "storage_removed": fraction, "qualifies": fraction >= target}
        if entry["qualifies"]:
            entry["val"] = score(model, name)
            rows.append(report.number(f"{prefix}, {name}: {scored}", entry["val"], unit=unit, digits=digits))
        rows.append(report.number(f"{prefix}, {name}: storage removed", fraction))
        grid[name] = entry
        print(f"seed {seed}: {name}: storage -{fraction:.1%}"
              + (f", val {entry['val']:.3f}" if "val" in entry else " (below the target)"), flush=True)
    qualified = [e for e in grid.values() if e["qualifies"]]
    if not qualified:
        raise ValueError(f"no structure removes at least {target:.0%}: nothing to choose from")
    return grid, rows, max(qualified, key=lambda e: e["val"])


def choose_rates(candidates: Mapping[str, Callable[[], object]], rates: Sequence[float],
                 score: Callable[[object, float, str], float], quantity: Callable[[str, float], str],
                 known: Mapping[str, Mapping[float, float]] | None = None, unit: str = "%",
                 digits: int = 1) -> tuple[dict, list[dict], dict]:
    """The rate step the choice benchmarks share: every model of ``candidates`` is fine-tuned at every rate of
    ``rates`` and scored on validation (``score(model, lr, name)``), and each keeps its best rate. Each measurement
    starts from a **fresh** copy, ``candidates[name]()``: fine-tuning works in place, so reusing one model would give
    every later rate of the grid the earlier rates' training too. ``known`` holds scores already measured on a fresh
    copy (the winning structure's at the structure step's rate); they are reused. The rows' quantities are
    ``quantity(name, lr)``.

    Returns ``(by_rate, rows, chosen)``: ``{name: {lr: score}}``, the rows for the results file (each model's rates in
    increasing order) and ``{name: best lr}``."""
    by_rate = {name: dict((known or {}).get(name, {})) for name in candidates}
    for lr in rates:
        for name, fresh in candidates.items():
            if lr not in by_rate[name]:
                by_rate[name][lr] = score(fresh(), lr, f"{name} lr {lr}")
    rows = [report.number(quantity(name, lr), v, unit=unit, digits=digits)
            for name, by_lr in by_rate.items() for lr, v in sorted(by_lr.items())]
    return by_rate, rows, {name: max(by_lr, key=by_lr.get) for name, by_lr in by_rate.items()}
