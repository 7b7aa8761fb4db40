"""Reference runs: execute notebooks with chosen values of their ``parameters`` cell and keep what they measured.

    python -m pruning.reproduce                                   # every notebook, lab scale, seeds 0 1 2
    python -m pruning.reproduce 01_gdp_gradient_pruning --scale full --seeds 0
    python -m pruning.reproduce 03 05 --seeds 3 4 --force         # names may be given by their number

Each (notebook, scale, seed) is executed by papermill (the standard tool for parameterised notebooks: it injects
``SCALE`` and ``SEED`` after the cell tagged ``parameters`` and runs every cell, the notebook's own key checks
included, in strict mode: a missed check fails the run) into ``build/reference/`` (ignored by git); the committed
notebook is never modified. The notebook's
``report.save`` call writes ``results/runs/<notebook>/<scale>-seed<k>.json`` (committed), to which this command
adds the wall time, the date, the commit and papermill's version; the kernel itself records the CPU, cores, threads,
torch version and GPU. A run whose results file exists is skipped unless ``--force``; a failing run (an assert, an
error) writes no results file, is reported with its error, and makes the command exit 1 after the other runs.
Run reference runs alone: two torch processes on 2 cores slow each other far more than twice.

``--html`` also writes ``build/html/<notebook>.<scale>-seed<k>.html`` from each executed copy (nbconvert): a
read-only copy with every output, for a teacher to project when a live run fails or differs. In a fresh clone, where
the committed results exist but no executed copy does, the notebook is executed once more for it, and the committed
results file is left as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import checks, report

NOTEBOOKS = report.NOTEBOOKS_DIR
EXECUTED = report.ROOT / "build" / "reference"
HTML = report.ROOT / "build" / "html"


def notebooks(names=None) -> list[Path]:
    """The notebooks to run: all of them, or those named (by file name, stem, or leading number such as ``03``)."""
    every = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not names:
        return every
    chosen = []
    for name in names:
        stem = Path(name).stem
        match = [p for p in every if p.stem == stem or p.stem.split("_")[0] == stem]
        if len(match) != 1:
            raise SystemExit(f"no single notebook matches {name!r}; notebooks: {', '.join(p.stem for p in every)}")
        chosen += match
    return chosen


def shows_widget(path: Path) -> bool:
    """Whether a notebook shows an ipywidget (one of ``pruning.widgets``' explorers or its own): the notebooks that
    `make test` runs in a real browser (tests/test_browser.py) rather than under nbval."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "pruning.widgets" in code or "ipywidgets" in code


def _commit() -> str | None:
    """The commit the run started from, with "+changes" when notebooks/ or pruning/ differed from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=report.ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "notebooks", "pruning"], cwd=report.ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def executed_path(stem: str, scale: str, seed: int) -> Path:
    """Where the executed copy of one reference run goes (ignored by git)."""
    return EXECUTED / f"{stem}.{scale}-seed{seed}.ipynb"


def export_html(executed: Path) -> Path:
    """An executed notebook as one self-contained HTML page (images embedded) in ``build/html/``."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nbformat.read(executed, as_version=4))
    HTML.mkdir(parents=True, exist_ok=True)
    page = HTML / executed.with_suffix(".html").name
    page.write_text(body, encoding="utf-8")
    return page


# seconds one cell may run before the run fails: a lab cell takes a few minutes at most, a full-scale one can take an
# hour. Without a limit a lost kernel message hangs a run for ever: seen twice in about 25 lab runs on 2026-12-02
# (notebooks 02 and 04, each time at the notebook's first widget cell, the kernel idle while papermill waited; an
# open nbclient issue, jupyter/nbclient#312, reports cells with ipywidgets that sometimes block). With the limit the
# run fails, records nothing, and the command goes on with the next run; rerun the failed seed
CELL_TIMEOUT = {"lab": 600, "full": 4 * 3600}


def run_one(path: Path, scale: str, seed: int, kernel: str = "python3", progress: bool = True,
            record: bool = True) -> Path:
    """Execute one notebook with ``SCALE`` and ``SEED`` set; returns its results file (or, with ``record=False``,
    its executed copy, leaving any results file alone). Raises on failure, leaving no results file behind."""
    import papermill as pm

    if not record:
        import tempfile
        out = Path(tempfile.mkdtemp()) / "discarded.json"
    else:
        out = report.run_path(path.stem, scale, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    pending = out.with_suffix(".pending")
    pending.unlink(missing_ok=True)
    EXECUTED.mkdir(parents=True, exist_ok=True)
    executed = executed_path(path.stem, scale, seed)
    os.environ[report.RUN_OUT] = str(pending)
    strict_before = os.environ.get(checks.STRICT_ENV)
    os.environ[checks.STRICT_ENV] = "1"   # a reference run stops at its first missed key check (pruning/checks.py)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(executed), parameters={"SCALE": scale, "SEED": seed}, kernel_name=kernel,
                            cwd=str(path.parent), progress_bar=progress, log_output=False,
                            execution_timeout=CELL_TIMEOUT[scale])
    except BaseException:
        pending.unlink(missing_ok=True)   # a run that saved and then failed an assert records nothing
        raise
    finally:
        os.environ.pop(report.RUN_OUT, None)
        if strict_before is None:
            os.environ.pop(checks.STRICT_ENV, None)
        else:
            os.environ[checks.STRICT_ENV] = strict_before
    wall = time.perf_counter() - start
    if not record:
        pending.unlink(missing_ok=True)
        return executed
    if not pending.exists():
        raise RuntimeError(f"{path.stem} ran to the end but never called report.save, so nothing was recorded")
    record = json.loads(pending.read_text())
    if (record.get("scale"), record.get("seed")) != (scale, seed):
        pending.unlink()
        raise RuntimeError(f"{path.stem} saved scale/seed {record.get('scale')}/{record.get('seed')}, "
                           f"not the {scale}/{seed} it was given")
    record["run"] = {"wall_seconds": round(wall, 1), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "commit": _commit(), "papermill": pm.__version__, "executed": str(executed.relative_to(report.ROOT))}
    out.write_text(json.dumps(record, indent=2) + "\n")
    pending.unlink()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pruning.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook names or numbers (default: all)")
    parser.add_argument("--scale", default="lab", choices=("lab", "full"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--force", action="store_true", help="rerun runs whose results file exists")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default: this Python's python3)")
    parser.add_argument("--html", action="store_true",
                        help="also write build/html/ pages of the executed copies (for teachers)")
    args = parser.parse_args(argv)

    from tqdm.auto import tqdm
    todo = [(p, s) for p in notebooks(args.notebooks) for s in args.seeds]
    failures = []
    with tqdm(todo, desc="reference runs", unit="run") as bar:
        for path, seed in bar:
            out = report.run_path(path.stem, args.scale, seed)
            executed = executed_path(path.stem, args.scale, seed)
            if out.exists() and not args.force:
                if args.html and not executed.exists():
                    bar.write(f"executing {path.stem} {args.scale} seed {seed} for its HTML copy (results kept as committed)")
                    try:
                        run_one(path, args.scale, seed, args.kernel, progress=False, record=False)
                    except Exception as exc:
                        failures.append((path.stem, seed, exc))
                        bar.write(f"FAILED {path.stem} {args.scale} seed {seed}: {exc}")
                        continue
                else:
                    bar.write(f"skip {path.stem} {args.scale} seed {seed}: {out.relative_to(report.ROOT)} exists "
                              "(--force reruns)")
                if args.html:
                    bar.write(f"html {export_html(executed).relative_to(report.ROOT)}")
                continue
            bar.set_postfix_str(f"{path.stem} seed {seed}")
            start = time.perf_counter()
            try:
                written = run_one(path, args.scale, seed, args.kernel, progress=False)
            except Exception as exc:  # an assert or error inside the notebook: report it, go on with the others
                failures.append((path.stem, seed, exc))
                bar.write(f"FAILED {path.stem} {args.scale} seed {seed} after {time.perf_counter() - start:.0f} s: "
                          f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}")
                continue
            bar.write(f"ok {path.stem} {args.scale} seed {seed} in {time.perf_counter() - start:.0f} s -> "
                      f"{written.relative_to(report.ROOT)}")
            if args.html:
                bar.write(f"html {export_html(executed).relative_to(report.ROOT)}")
    if failures:
        print(f"{len(failures)} run(s) failed; executed copies with the error are in {EXECUTED.relative_to(report.ROOT)}/",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
