"""Results files and the README's generated tables.

Notebooks call :func:`save` to write their measured key numbers to ``results/<notebook>.json``;
``python -m pruning.report`` renders the README's tables from those files and from the
checkpoints' records, so that no figure in the README is typed by hand:

    python -m pruning.report            # print the tables
    python -m pruning.report --write    # replace them in README.md between their markers
    python -m pruning.report --check    # exit 1 if README.md differs from what --write would make (CI runs this)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from . import zoo

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "results"
README = ROOT / "README.md"


def save(notebook: str, rows: list[dict], **extra) -> Path:
    """Write a notebook's key numbers: ``rows`` of ``{"quantity", "paper", "ours", "tolerance"}``,
    plus any extra fields (scale, seed, seconds). Returns the file written."""
    for r in rows:
        missing = {"quantity", "paper", "ours", "tolerance"} - set(r)
        if missing:
            raise ValueError(f"result row {r} lacks {sorted(missing)}")
    RESULTS_DIR.mkdir(exist_ok=True)
    scale = extra.get("scale", "lab")  # lab results are what CI reruns; other scales are kept beside them
    path = RESULTS_DIR / (f"{notebook}.json" if scale == "lab" else f"{notebook}.{scale}.json")
    path.write_text(json.dumps({"notebook": notebook, "rows": rows, **extra}, indent=2) + "\n")
    return path


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


def key_numbers_table() -> str:
    lines = ["| notebook | quantity | paper | ours (reduced) | asserted | scale | rerun |", "|---|---|---|---|---|---|---|"]
    results = [json.loads(p.read_text()) for p in RESULTS_DIR.glob("*.json")]
    for res in sorted(results, key=lambda r: (r["notebook"], r.get("scale", "lab") != "lab")):  # lab rows first
        nb = res["notebook"]
        for r in ({k: _cell(v) for k, v in row.items()} for row in res["rows"]):
            scale = res.get("scale", "lab")
            rerun = (f"`.venv/bin/python -m pytest --nbval-lax --nbval-current-env notebooks/{nb}.ipynb`" if scale == "lab"
                     else f'set `SCALE = "{scale}"` in the notebook\'s parameters cell and run it')
            lines.append(f"| {nb} | {r['quantity']} | {r['paper']} | {r['ours']} | {r['tolerance']} | {scale} | {rerun} |")
    return "\n".join(lines)


TABLES = {"baselines": baselines_table, "keynumbers": key_numbers_table}


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
