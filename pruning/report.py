"""Results files, the evidence over seeds, and the README's generated tables.

Each paper notebook ends by calling :func:`save` with its key numbers, built by three helpers:

* :func:`number`     - one measured quantity (a FLOPs reduction, an accuracy drop, a correlation);
* :func:`paired`     - method A against method B on the *same* test images: both accuracies and the exact McNemar
                       test on per-image correctness (:func:`pruning.stats.mcnemar`);
* :func:`difference` - A against B where no per-image pairing exists (mAP, a search score).

A live run (Jupyter, nbval) writes ``results/live/<notebook>.<scale>.json``, which git ignores. A **reference run**
(``python -m pruning.reproduce``) writes ``results/runs/<notebook>/<scale>-seed<k>.json``, which is committed.
The README's key-numbers table aggregates the reference runs: mean +- sd (n) for every number, and for every
comparison the mean paired difference over seeds with its 95% interval and the label *resolved* (the interval
excludes zero) or *not resolved at this budget*::

    python -m pruning.report            # print the tables
    python -m pruning.report --write    # replace them in README.md between their markers
    python -m pruning.report --check    # exit 1 if README.md differs from what --write would make (CI runs this)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import stats, zoo

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "results"
README = ROOT / "README.md"
RUN_OUT = "PRUNING_RUN_OUT"   # set by pruning.reproduce: the file a reference run's save() writes
UNITS = {"%": 100.0, "pts": 1.0, "x": 1.0, "": 1.0}   # how a stored value is shown: fractions as percent


def number(quantity: str, value: float, unit: str = "%", paper: str = "-", asserted: str = "reported, not asserted",
           paper_value: float | None = None, digits: int = 1) -> dict:
    """One measured quantity. ``unit="%"`` means ``value`` is a fraction (0.35 shows as 35.0%); ``"pts"``,
    ``"x"`` and ``""`` are shown as they are. ``paper_value`` (in the shown unit), when the paper gives one,
    lets the report say whether the seeds' interval holds it."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {sorted(UNITS)}, got {unit!r}")
    return {"kind": "number", "quantity": quantity, "paper": paper, "value": float(value), "unit": unit,
            "asserted": asserted, "paper_value": paper_value, "digits": digits}


def _rounding(value: float) -> float:
    """Half a unit of the last digit a figure is stated with (35.3 -> 0.05): how far the paper's own rounding
    lets the true value lie from the printed one."""
    text = repr(float(value))
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text else 0
    return 0.5 * 10 ** -decimals


def paired(quantity: str, a: str, b: str, correct_a, correct_b, paper: str = "-",
           asserted: str = "reported, not asserted") -> dict:
    """Method ``a`` against method ``b`` on the same images: per-image correctness (boolean sequences in the same
    order) gives both accuracies and the exact McNemar test of this run."""
    test = stats.mcnemar(correct_a, correct_b)
    n = test.n
    acc_a, acc_b = sum(map(bool, correct_a)) / n, sum(map(bool, correct_b)) / n
    return {"kind": "paired", "quantity": quantity, "paper": paper, "a": a, "b": b, "value_a": acc_a, "value_b": acc_b,
            "unit": "%", "mcnemar": test.as_dict(), "asserted": asserted}


def difference(quantity: str, a: str, b: str, value_a: float, value_b: float, unit: str = "%", paper: str = "-",
               asserted: str = "reported, not asserted", digits: int = 1) -> dict:
    """``a`` against ``b`` where no per-image pairing exists: only the interval over seeds judges it."""
    return {"kind": "difference", "quantity": quantity, "paper": paper, "a": a, "b": b, "value_a": float(value_a),
            "value_b": float(value_b), "unit": unit, "asserted": asserted, "digits": digits}


def _environment() -> dict:
    """What a run ran on: recorded inside the kernel that did the work."""
    import torch
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    # the vector instructions torch's CPU kernels use here (AVX2, AVX512, ...): the same model name comes with and
    # without AVX-512, and oneDNN's kernels for each round differently, so a fine-tuned accuracy can move by an
    # image or two between machine kinds (runs are deterministic per kind, not across kinds)
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def save(notebook: str, rows: list[dict], **extra) -> Path:
    """Write a notebook's key numbers (``rows`` made by :func:`number`, :func:`paired`, :func:`difference`), plus
    any extra fields (scale, seed, seconds, data). A reference run writes where ``$PRUNING_RUN_OUT`` says; any
    other run writes ``results/live/<notebook>.<scale>.json``. Returns the file written."""
    for r in rows:
        if r.get("kind") not in ("number", "paired", "difference"):
            raise ValueError(f"result row {r} was not made by report.number, report.paired or report.difference")
    scale = extra.get("scale", "lab")
    path = Path(os.environ[RUN_OUT]) if os.environ.get(RUN_OUT) else RESULTS_DIR / "live" / f"{notebook}.{scale}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"notebook": notebook, "scale": scale, "rows": rows, **extra, "environment": _environment()}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def live(row: dict) -> str:
    """This run's value of one row, as a sentence fragment: ``35.0%``, or for a comparison
    ``GDP 79.4% vs L1 78.2% (+1.2 pts; images only one gets right: 60 vs 48 of 5,000, McNemar p = 0.29)``."""
    digits = row.get("digits", 1)
    if row["kind"] == "number":
        return _fmt(row, row["value"])
    a, b = (f"{row[k] * UNITS[row['unit']]:.{digits}f}"
            + {"%": "%", "x": "x", "pts": " pts"}.get(row["unit"], "") for k in ("value_a", "value_b"))
    text = f"{row['a']} {a} vs {row['b']} {b} ({_fmt(row, row['value_a'] - row['value_b'], signed=True)}"
    if row["kind"] == "paired":
        m = row["mcnemar"]
        text += f"; images only one gets right: {m['only_a']} vs {m['only_b']} of {m['n']:,}, McNemar p = {m['p']:.2g}"
    return text + ")"


# --- reference runs ------------------------------------------------------------------------------------------------

def run_path(notebook: str, scale: str, seed: int) -> Path:
    """Where the reference run of ``notebook`` at ``scale`` with ``seed`` is kept."""
    return RESULTS_DIR / "runs" / notebook / f"{scale}-seed{seed}.json"


def load_runs(notebook: str, scale: str = "lab") -> list[dict]:
    """The committed reference runs of one notebook at one scale, by seed."""
    folder = RESULTS_DIR / "runs" / notebook
    runs = [json.loads(p.read_text()) for p in folder.glob(f"{scale}-seed*.json")] if folder.exists() else []
    return sorted(runs, key=lambda r: r["seed"])


def row_value(row: dict) -> float:
    """The one number a row contributes over seeds: its value, or A - B for a comparison (in stored units)."""
    return row["value"] if row["kind"] == "number" else row["value_a"] - row["value_b"]


def reference_values(notebook: str, quantity: str, scale: str = "lab", part: str = "value") -> dict[int, float]:
    """``{seed: value}`` of one quantity over the reference runs (``part``: "value" is the row's number or A - B;
    "value_a" / "value_b" pick one side of a comparison)."""
    out = {}
    for run in load_runs(notebook, scale):
        for row in run["rows"]:
            if row["quantity"] == quantity:
                out[run["seed"]] = row_value(row) if part == "value" else row[part]
    return out


def check_reference(notebook: str, quantity: str, live: float, tolerance: float, scale: str = "lab",
                    part: str = "value", exclude_seed: int | None = None) -> str:
    """Assert that a live value lies within ``tolerance`` (stored units) of the range the reference seeds span.
    Passes, and says so, when no reference run exists yet (for example during the first reference runs); the seed
    being run is left out of its own reference when ``exclude_seed`` names it. Returns a sentence for the reader."""
    ref = {s: v for s, v in reference_values(notebook, quantity, scale, part).items() if s != exclude_seed}
    if not ref:
        return f"{quantity}: no reference runs at scale {scale!r} yet, nothing to compare with"
    low, high = min(ref.values()), max(ref.values())
    inside = low - tolerance <= live <= high + tolerance
    message = (f"{quantity}: live {live:.4g} against the reference seeds' range [{low:.4g}, {high:.4g}] "
               f"(n = {len(ref)}) +- {tolerance:g}")
    assert inside, message + ": outside"
    return message + ": inside"


@dataclass
class Evidence:
    """One key number aggregated over the reference runs of one scale."""

    row: dict                      # the row of the first run (labels, units, what is asserted)
    values: dict[int, float]       # seed -> the row's number (A - B for comparisons)
    p_values: dict[int, float] = field(default_factory=dict)   # seed -> McNemar p (paired rows)

    @property
    def summary(self) -> stats.Summary:
        return stats.summary(self.values.values())

    @property
    def interval(self) -> stats.Interval:
        """For a comparison, the 95% interval of the mean paired difference; for a number with the paper's value,
        the interval of (ours - paper)."""
        shift = 0.0
        if self.row["kind"] == "number":
            shift = (self.row.get("paper_value") or 0.0) / UNITS[self.row["unit"]]
        return stats.paired_interval([v - shift for v in self.values.values()])

    @property
    def label(self) -> str:
        """resolved / not resolved for comparisons; for numbers with a paper value, whether the seeds' interval
        holds it, widened by the paper's own rounding (35.3 may be anything in [35.25, 35.35]); empty otherwise."""
        if self.row["kind"] != "number":
            return stats.verdict(self.interval)
        if self.row.get("paper_value") is None:
            return ""
        iv, slack = self.interval, _rounding(self.row["paper_value"]) / UNITS[self.row["unit"]]
        differs = iv.low > slack or iv.high < -slack
        return "differs from the paper (resolved)" if differs else "paper's value not excluded"


def evidence(notebook: str, scale: str = "lab") -> dict[str, Evidence]:
    """Every quantity of a notebook's reference runs at one scale, aggregated over seeds."""
    out: dict[str, Evidence] = {}
    # labels (what is asserted, the paper's figure) come from the newest run, values from every run
    runs = sorted(load_runs(notebook, scale), key=lambda r: r.get("run", {}).get("date", ""), reverse=True)
    for run in runs:
        for row in run["rows"]:
            ev = out.setdefault(row["quantity"], Evidence(row=row, values={}))
            ev.values[run["seed"]] = row_value(row)
            if row["kind"] == "paired":
                ev.p_values[run["seed"]] = row["mcnemar"]["p"]
    for ev in out.values():
        ev.values = dict(sorted(ev.values.items()))
        ev.p_values = dict(sorted(ev.p_values.items()))
    return out


def _fmt(row: dict, value: float, signed: bool = False) -> str:
    unit, digits = row["unit"], row.get("digits", 1)
    shown = value * UNITS[unit]
    if row["kind"] != "number" and unit == "%":
        return f"{shown:+.{digits}f} pts"
    return f"{shown:{'+' if signed else ''}.{digits}f}{unit if unit in ('%', 'x') else (' ' + unit if unit else '')}"


def describe(ev: Evidence) -> str:
    """The aggregated cell: mean +- sd (n) for a number; for a comparison the mean difference with its interval,
    both sides' means and the per-seed McNemar p-values."""
    row, s = ev.row, ev.summary
    scale, digits = UNITS[row["unit"]], row.get("digits", 1)
    sd = f" +- {s.sd * scale:.{digits}f} sd" if s.n > 1 else ""
    if row["kind"] == "number":
        return f"{_fmt(row, s.mean)}{sd} (n = {s.n})"
    iv = ev.interval
    bounds = f"[{iv.low * scale:+.{digits}f}, {iv.high * scale:+.{digits}f}]" if math.isfinite(iv.low) else "[n/a: one seed]"
    text = f"{row['a']} - {row['b']} = {_fmt(row, s.mean, signed=True)}{sd}, 95% CI {bounds} (n = {s.n})"
    if ev.p_values:
        text += "; McNemar p by seed: " + ", ".join(f"{p:.2g} (seed {seed})" for seed, p in ev.p_values.items())
    return text


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _cell(value) -> str:
    """A value made safe for a markdown table cell (a literal ``|`` would end the cell)."""
    return str(value).replace("|", "\\|")


def baselines_table() -> str:
    lines = ["| model | data (train / val / test) | test accuracy | MACs | FLOPs (2 x MACs) | params | recipe | trained in |",
             "|---|---|---|---|---|---|---|---|"]
    for name in sorted(zoo.RECIPES):
        try:
            r = zoo.info(name)
        except FileNotFoundError:
            lines.append(f"| `{name}` | | not trained yet | | | | | |")
            continue
        rc, d = r["recipe"], r["data"]
        width = f", width {rc['kwargs']['width']}" if "width" in rc["kwargs"] else ""
        lines.append(
            f"| `{name}` | {rc['dataset']} {d['train']:,} / {d['val']:,} / {d['test']:,} | {r['test_accuracy']:.2%} | "
            f"{r['macs'] / 1e6:.2f} M | {2 * r['macs'] / 1e6:.2f} M | {r['params'] / 1e6:.3f} M | {rc['model']}{width}: {rc['epochs']} epochs SGD, "
            f"{rc['schedule']} lr {rc['lr']}, wd {rc['weight_decay']}, batch {rc['batch_size']}, seed {rc['seed']} | "
            f"{_duration(r['train_seconds'])} ({r['threads']} threads, torch {r['torch'].split('+')[0]}) |")
    lines.append(_detector_row())
    return "\n".join(lines)


def _detector_row() -> str:
    """The detector of notebook 07: mAP@0.5 instead of accuracy, stored numbers instead of MACs."""
    from . import detector
    try:
        r = detector.info()
    except FileNotFoundError:
        return f"| `{detector.NAME}` | | not trained yet | | | | | |"
    rc = r["recipe"]
    widths = "-".join(str(w) for w in rc["widths"] if w != "M")
    return (f"| `{r['name']}` | MNIST digits on {rc['size']}x{rc['size']} canvases {rc['n_train']:,} / {rc['n_val']:,} / "
            f"{rc['n_test']:,} | mAP@0.5 {r['test_map50']:.3f} | | | {r['storage'] / 1e6:.3f} M (stored numbers) | "
            f"Faster R-CNN, backbone {widths}: {rc['epochs']} epochs SGD, cosine lr {rc['lr']}, wd {rc['weight_decay']}, "
            f"batch {rc['batch_size']}, seed {rc['seed']} | {_duration(r['train_seconds'])} ({r['machine'].split(', ')[-1]}, "
            f"torch {r['torch'].split('+')[0]}) |")


NOTEBOOKS_DIR = ROOT / "notebooks"


def _seeds(runs: list[dict]) -> str:
    return ", ".join(str(r["seed"]) for r in runs)


def key_numbers_table() -> str:
    """One row per key number of every notebook: the reference runs at lab and at full scale, aggregated."""
    lines = ["| notebook | quantity | paper | lab scale: reference runs | full scale: reference runs | label (lab; full) "
             "| asserted in the notebook |", "|---|---|---|---|---|---|---|"]
    for nb in sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")):
        by_scale = {scale: evidence(nb, scale) for scale in ("lab", "full")}
        quantities = list(dict.fromkeys([*by_scale["lab"], *by_scale["full"]]))
        if not quantities:
            lines.append(f"| {nb} | no reference runs yet | | | | | |")
            continue
        for q in quantities:
            ev = {scale: by_scale[scale].get(q) for scale in by_scale}
            row = (ev["lab"] or ev["full"]).row
            cells = [describe(e) if e else "-" for e in ev.values()]
            labels = "; ".join(e.label or "-" if e else "-" for e in ev.values())
            lines.append("| " + " | ".join(_cell(c) for c in (nb, q, row["paper"], *cells, labels, row["asserted"])) + " |")
    lines += _speed_key_rows()
    return "\n".join(lines)


SPEED_KEY_SETTING = "ONNX Runtime, batch 1, 1 thread"   # where a deployed model would run: the key numbers' speed rows


def _speed_key_rows(path: Path | None = None) -> list[str]:
    """``benchmarks/speed.py``'s measured speed-up in ONNX Runtime at batch 1, one key-numbers row per structured
    method and budget, beside its FLOPs-predicted speed-up (one interleaved measurement, so no interval)."""
    path = path or RESULTS_DIR / "benchmarks" / "speed.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())
    out = []
    for k, r in res["rows"].items():
        if k == "dense" or SPEED_KEY_SETTING not in r["measured"]:
            continue
        measured = r["measured"][SPEED_KEY_SETTING]["speedup"]
        paper = "1.4x (Raspberry Pi 4B; a Faster R-CNN at -54% storage)" if k.startswith("hybrid") else "-"
        out.append("| " + " | ".join(_cell(c) for c in (
            "benchmarks/speed.py", f"{k}: measured speed-up, {SPEED_KEY_SETTING} (FLOPs-predicted {r['predicted']:.2f}x)",
            paper, f"{measured:.2f}x, {measured / r['predicted']:.2f} of predicted (one interleaved run, {res['date']})",
            "-", "-", "benchmark, not asserted")) + " |")
    return out


def runs_table() -> str:
    """Which reference runs exist: notebook, scale, seeds, wall time per run, where they ran (the CPU's vector
    instructions over the runs: "not recorded" for runs from before the environment kept them)."""
    lines = ["| notebook | scale | seeds | wall time per run | machine (vector instructions), cores (threads, torch) |", "|---|---|---|---|---|"]
    for folder in sorted((RESULTS_DIR / "runs").glob("*")) if (RESULTS_DIR / "runs").exists() else []:
        for scale in ("lab", "full"):
            runs = load_runs(folder.name, scale)
            if not runs:
                continue
            walls = [r.get("run", {}).get("wall_seconds", r.get("seconds", 0)) for r in runs]
            env = runs[0]["environment"]
            kinds = sorted({r["environment"].get("cpu_capability", "not recorded") for r in runs})
            where = (f"{env['cpu']} ({' / '.join(kinds)}), {env['cores']} cores ({env['threads']} threads, "
                     f"torch {env['torch'].split('+')[0]})")
            if env.get("cuda"):
                where += f", {env['cuda']}"
            span = f"{min(walls):.0f} s" if len(walls) == 1 else f"{min(walls):.0f} - {max(walls):.0f} s"
            lines.append(f"| {folder.name} | {scale} | {_seeds(runs)} | {span} | {_cell(where)} |")
    return "\n".join(lines)


def legacy_table() -> str:
    """Single runs from before reference runs existed (``results/legacy/``): kept for the record, not evidence."""
    lines = ["| notebook | scale | quantity | paper | ours (one run, seed 0) |", "|---|---|---|---|---|"]
    for p in sorted((RESULTS_DIR / "legacy").glob("*.json")) if (RESULTS_DIR / "legacy").exists() else []:
        res = json.loads(p.read_text())
        for r in res["rows"]:
            lines.append(f"| {res['notebook']} | {res.get('scale', 'lab')} | {_cell(r['quantity'])} | {_cell(r['paper'])} "
                         f"| {_cell(r['ours'])} |")
    return "\n".join(lines)


def speed_table(path: Path | None = None) -> str:
    """``benchmarks/speed.py``'s measurement: per structured method and budget, the FLOPs-predicted speed-up and the
    measured one divided by it, in each runtime setting (1.0: as much faster as the FLOPs say)."""
    path = path or RESULTS_DIR / "benchmarks" / "speed.json"
    if not path.exists():
        return "Not measured yet: run `.venv/bin/python benchmarks/speed.py` (alone), then `python -m pruning.report --write`."
    res = json.loads(path.read_text())
    settings = list(res["rows"]["dense"]["measured"])
    head = ("| model | MACs | predicted speed-up | " + " | ".join(f"measured / predicted: {s}" for s in settings) + " |\n"
            "|---|---|---|" + "---|" * len(settings))
    lines = [head, "| dense | " + f"{res['rows']['dense']['macs'] / 1e6:.1f} M | 1.00x | "
             + " | ".join(f"{res['rows']['dense']['measured'][s]['median_ms']:.2f} ms per batch" for s in settings) + " |"]
    for k, r in res["rows"].items():
        if k == "dense":
            continue
        lines.append(f"| {k} | {r['macs'] / 1e6:.1f} M | {r['predicted']:.2f}x | "
                     + " | ".join(f"{r['measured'][s]['speedup'] / r['predicted']:.2f} ({r['measured'][s]['speedup']:.2f}x)"
                                  if s in r["measured"] else "-" for s in settings) + " |")
    m = res["machine"]
    lines.append(f"\nMeasured {res['date']} on {m['cpu']}, {m['cores']} cores, torch {m['torch'].split('+')[0]}, "
                 f"ONNX Runtime {m['onnxruntime']}; median of {res['runs']} interleaved runs per setting, "
                 f"{res['seconds']} s in all. In brackets: the measured speed-up itself."
                 + "".join(f" {note}." for note in res.get("notes", [])))
    return "\n".join(lines)


ALLOCATION = "criterion_allocation"
_ACCURACY = re.compile(r"at -(\d+)% MACs, (.+) scores, (.+) allocation: test accuracy")
_CRITERIA = re.compile(r"at -(\d+)% MACs, (.+) allocation: (.+) vs (.+) scores$")
_ALLOCATIONS = re.compile(r"at -(\d+)% MACs, (.+) scores: (.+) vs uniform allocation$")


def _allocation_parts(budget: int | None = None, scale: str = "lab"):
    """The benchmark's evidence at ``scale`` sorted into the three tables: accuracies by (budget, criterion) and
    allocation, criteria compared by (budget, allocation), allocations compared by (budget, criterion)."""
    grid, criteria, allocations = {}, {}, {}
    for q, e in evidence(ALLOCATION, scale).items():
        if budget is not None and f" at -{budget}% MACs" not in q:
            continue
        if (m := _ACCURACY.search(q)):
            grid.setdefault((m[1], m[2]), {})[m[3]] = e
        elif (m := _CRITERIA.search(q)):
            criteria.setdefault((m[1], m[2]), {})[f"{m[3]} - {m[4]}"] = e
        elif (m := _ALLOCATIONS.search(q)):
            allocations.setdefault((m[1], m[2]), {})[f"{m[3]} - uniform"] = e
    return grid, criteria, allocations


def allocation_differences(budget: int, scale: str = "lab") -> dict[tuple[str, str], Evidence]:
    """At one budget: ``(allocation, "GDP - L1")`` -> the criteria's paired difference under that allocation, and
    ``(criterion, "global, max - uniform")`` -> the allocations' under that criterion (a notebook quotes them)."""
    _, criteria, allocations = _allocation_parts(budget, scale)
    return {(key, col): e for part in (criteria, allocations) for (_, key), row in part.items() for col, e in row.items()}


def allocation_summary(budget: int, scale: str = "lab") -> str:
    """One budget's benchmark in words, for a notebook: GDP - L1 under each allocation, then GDP's own global rule
    (max normalisation) against the uniform allocation for each criterion; empty before the benchmark has run."""
    gaps = allocation_differences(budget, scale)
    allocations = [a for a, col in gaps if col == "GDP - L1"]
    criteria = [c for c, col in gaps if col == "global, max - uniform"]
    if not allocations and not criteria:
        return ""
    return (f"At -{budget}%, GDP - L1 (points, 95% CI over seeds, label): "
            + "; ".join(f"{difference_text(gaps[(a, 'GDP - L1')])} under **{a}**" for a in allocations)
            + ". Global (max) - uniform, same criterion: "
            + "; ".join(f"{difference_text(gaps[(c, 'global, max - uniform')])} for **{c}**" for c in criteria) + ".")


def difference_text(e: Evidence) -> str:
    """A paired difference over seeds as the course writes it: mean in points, 95% interval, label."""
    iv, s = e.interval, e.summary
    bounds = f"[{100 * iv.low:+.1f}, {100 * iv.high:+.1f}]" if math.isfinite(iv.low) else "[n/a: one seed]"
    return f"{100 * s.mean:+.1f} {bounds}, {e.label}"


def allocation_table(budget: int | None = None, scale: str = "lab") -> str:
    """``benchmarks/criterion_allocation.py`` over its seeds: the test accuracy of every criterion under every
    allocation (mean +- sd), then the criteria compared under each allocation and each global allocation against
    the uniform one, as mean paired differences with their 95% interval over seeds and the label. ``budget`` (35 or
    70, the MACs removed in percent) keeps that budget's rows only; the README shows both. ``scale`` picks the
    lab runs or the ``--scale full`` ones."""
    grid, criteria, allocations = _allocation_parts(budget, scale)
    if not grid and not criteria and not allocations:
        option = "" if scale == "lab" else f" --scale {scale}"
        return (f"Not measured yet: run `.venv/bin/python benchmarks/criterion_allocation.py{option}` (alone), then "
                "`python -m pruning.report --write`.")

    def mean_sd(e):
        s = e.summary
        return f"{100 * s.mean:.1f}%" + (f" +- {100 * s.sd:.1f}" if s.n > 1 else "")

    def table(first, rows, values):
        cols = list(dict.fromkeys(c for r in rows.values() for c in r))
        out = [f"| budget | {first} | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        for (b, key), r in rows.items():
            out.append(f"| -{b}% | {key} | " + " | ".join(values(r[c]) if c in r else "-" for c in cols) + " |")
        return out

    n = max(e.summary.n for part in (grid, criteria, allocations) for r in part.values() for e in r.values())
    seeds = _seeds(load_runs(ALLOCATION, scale))
    spread = f"mean +- sd over seeds {seeds}" if n > 1 else f"seed {seeds}"
    lines = [f"Test accuracy after the same fine-tuning, {spread} (n = {n}); rows: criterion, columns: allocation.", "",
             *table("criterion", grid, mean_sd), "",
             "Criteria under the same allocation: mean paired difference in points [95% CI over seeds], label.", "",
             *table("allocation", criteria, difference_text), "",
             "Each global allocation against the uniform one, same criterion: mean paired difference in points "
             "[95% CI over seeds], label.", "", *table("criterion", allocations, difference_text)]
    return "\n".join(lines)


def choices_text(runs: list[dict], scored: str, fmt: str = ".1%") -> str:
    """Markdown for a choice benchmark (``benchmarks/hybrid_choices.py``, ``detector_choices.py``) as a notebook
    shows it: the first seed's structure grid (storage removed, the validation score ``scored`` at the structures'
    rate), the validation score of the winner and of L1 at each rate, the choice, what every other seed chose and by
    how much it beat the first seed's structure on its own grid, each structure's score averaged over the seeds
    (and whether that mean picks another structure), and a warning for a rate chosen at an edge of the grid. ``fmt`` formats a score (``".1%"`` for accuracy, ``".3f"`` for mAP)."""
    first = runs[0]
    chosen = first["data"]

    def name_of(data, structure):   # the grid's name of a structure
        return next(name for name, e in data["grid"].items() if e["structure"] == structure)

    def by_rate(data, m):
        return {float(lr): v for lr, v in data["rates"][m].items()}

    def picks(data):
        return ", ".join(f"{m} {lr:g}" for m, lr in data["chosen_lr"].items())

    lines = [f"| structure | storage removed | {scored} (lr {first['run']['structure_lr']:g}) |", "|---|---|---|"]
    lines += [f"| {name} | {e['storage_removed']:.1%} | " + (format(e["val"], fmt) if e["qualifies"] else
                                                             "below the storage target: not tried") + " |"
              for name, e in chosen["grid"].items()]
    lines += ["", f"{scored[:1].upper() + scored[1:]} by learning rate, for the winning structure and for L1 at its "
              "storage:", ""]
    lines += [f"- {m}: " + ", ".join(f"lr {lr:g} -> {format(v, fmt)}" for lr, v in sorted(by_rate(chosen, m).items()))
              for m in chosen["rates"]]
    lines += ["", f"**Chosen** (seed {first['seed']} of the benchmark): {name_of(chosen, chosen['structure'])}; "
              f"learning rates: {picks(chosen)}."]
    for r in runs[1:]:
        data = r["data"]
        theirs = name_of(data, data["structure"])
        if data["structure"] == chosen["structure"]:
            lines.append(f"Seed {r['seed']} chose {theirs}, the same structure; rates {picks(data)}.")
            continue
        ours = data["grid"][name_of(data, chosen["structure"])].get("val")
        if ours is None:
            lead = f"seed {first['seed']}'s structure did not qualify on its grid"
        else:
            margin = data["grid"][theirs]["val"] - ours
            lead = (f"{100 * margin:.1f} points" if fmt.endswith("%") else format(margin, fmt)) + \
                f" of {scored} above seed {first['seed']}'s structure on its own grid"
        lines.append(f"Seed {r['seed']} chose {theirs}, {lead}; rates {picks(data)}.")
    if len(runs) > 1:   # would the mean over the seeds choose otherwise? (structures that qualify on every seed)
        every = [name for name in chosen["grid"] if all(r["data"]["grid"].get(name, {}).get("qualifies") for r in runs)]
        mean = {name: sum(r["data"]["grid"][name]["val"] for r in runs) / len(runs) for name in every}
        best, ours = max(mean, key=mean.get), name_of(chosen, chosen["structure"])
        ranked = sorted(mean, key=mean.get, reverse=True)
        text = f"Mean {scored} over the {len(runs)} seeds: " + ", ".join(f"{n} {format(mean[n], fmt)}" for n in ranked)
        lines.append(text + (f"; the mean picks the same structure as seed {first['seed']}." if best == ours else
                             f"; **the mean would pick {best}, not seed {first['seed']}'s {ours}**."))
    grid = [float(lr) for lr in first["run"]["rates"]]
    for m, lr in chosen["chosen_lr"].items():
        if lr in (min(grid), max(grid)):
            scores = by_rate(chosen, m)
            nearest = sorted(scores, key=lambda x: abs(x - lr))[1]
            lines.append(f"**The rate chosen for {m} sits at an edge of the grid** ({lr:g}: {format(scores[lr], fmt)}, "
                         f"against {nearest:g}: {format(scores[nearest], fmt)}): a rate beyond it may do better, by "
                         "about as much as these two differ.")
    return "\n".join(lines)


def evidence_table(name: str, scale: str = "lab", contains: str = "") -> str:
    """Every quantity of one notebook's or benchmark's runs (those whose name holds ``contains``) over its seeds:
    the aggregate (:func:`describe`) and, for comparisons, the resolved / not-resolved label."""
    ev = {q: e for q, e in evidence(name, scale).items() if contains in q}
    if not ev:
        return f"No runs of `{name}` at scale {scale!r} yet."
    lines = ["| quantity | over the seeds | label |", "|---|---|---|"]
    lines += [f"| {_cell(q)} | {_cell(describe(e))} | {e.label or '-'} |" for q, e in ev.items()]
    return "\n".join(lines)


def claims_table() -> str:
    """Each paper's headline claims against the reference runs (:mod:`pruning.claims`, which builds on this module)."""
    from .claims import claims_table as table
    return table()


def full_scale_heading(runs: list[dict], what: str = "") -> str:
    """``**Full scale** (what, seeds ...)``, with the caveat that one seed gives no interval when there is one: the
    line the README and the notebooks put above a benchmark's full-scale runs."""
    caveat = "; one seed gives no interval, so no verdict" if len(runs) == 1 else ""
    return f"**Full scale** ({what + ', ' if what else ''}seed{'s' if len(runs) > 1 else ''} {_seeds(runs)}{caveat})"


def both_scales(name: str, make: Callable[[str], str]) -> str:
    """A benchmark's table at lab scale and, once it has ``--scale full`` runs, the same table for those."""
    text = make("lab")
    full = load_runs(name, "full")
    if full:
        text += f"\n\n{full_scale_heading(full, '`--scale full`')}:\n\n" + make("full")
    return text


TABLES = {"baselines": baselines_table, "keynumbers": key_numbers_table, "runs": runs_table, "legacy": legacy_table,
          "speed": speed_table, "claims": claims_table,
          "allocation": lambda: both_scales(ALLOCATION, lambda scale: allocation_table(scale=scale)),
          "mending": lambda: both_scales("mending_fitness", lambda scale: evidence_table("mending_fitness", scale)),
          "sbpfair": lambda: both_scales("sbp_fair", lambda scale: evidence_table("sbp_fair", scale, "% sparsity:")
                                         + "\n\n" + evidence_table("sbp_fair", scale, "trained to a plateau"))}


def render(text: str) -> str:
    """``text`` with every ``<!-- NAME:start -->...<!-- NAME:end -->`` block regenerated."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pruning.report", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="update README.md in place")
    action.add_argument("--check", action="store_true",
                        help="exit 1 if README.md's generated tables differ from the committed results")
    args = parser.parse_args(argv)
    if args.check:
        current = README.read_text()
        if render(current) != current:
            print(f"{README.name} is out of date with results/ and the checkpoint records: run "
                  "`python -m pruning.report --write` and commit README.md with the results it shows.")
            return 1
        print(f"{README.name} tables match results/ and the checkpoint records")
        return 0
    if args.write:
        README.write_text(render(README.read_text()))
        print(f"updated {README}")
    else:
        for name, make in TABLES.items():
            print(f"## {name}\n\n{make()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
