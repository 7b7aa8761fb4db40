"""Speed as deployed: measured against FLOPs-predicted speed-up of the course's structured methods, per runtime.

    .venv/bin/python benchmarks/speed.py            # about 3 minutes on 2 cores; run it alone (no other torch work)
    .venv/bin/python -m pruning.report --write      # puts the table into README.md ("Speed as deployed")

The shipped VGG-16 (width 0.5) is compressed by every structured method of the capstone (L1, GDP, OBD, mending,
the hybrid) at the capstone's budgets, without fine-tuning: speed depends on the structure, not on the accuracy.
L1 is also timed with its widths rounded up to multiples of 8 and 16, to show what odd channel counts cost.
Every model, dense included, is then timed interleaved (``measure.latency_many``) in four settings: PyTorch eager
at batch 1 on 1 thread and at batch 32 on 2 threads, and ONNX Runtime (CPU) in the same two. For each model and
setting the script reports measured speed-up (dense time / model time) divided by the FLOPs-predicted one
(dense MACs / model MACs): 1.0 means the model runs as much faster as its FLOPs say, less means overhead eats
part of the saving. All ratios of a setting come from one interleaved measurement. Results go to
``results/benchmarks/speed.json`` (with the machine, the threads and the versions).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning import budget, deploy, measure, select, surgery, zoo  # noqa: E402

OUT = ROOT / "results" / "benchmarks" / "speed.json"
SETTINGS = [("PyTorch eager", 1, 1), ("PyTorch eager", 32, 2), ("ONNX Runtime", 1, 1), ("ONNX Runtime", 32, 2)]
METHODS = ("L1", "GDP", "OBD", "mending", "hybrid")
ROUND = (8, 16)


def compressed_models(budgets, seed: int = 0):
    """{label: model} for every structured method at every budget (no fine-tuning: only the structure counts)."""
    vgg = zoo.pretrained("vgg16-cifar10").eval()
    data = zoo.dataset("vgg16-cifar10", test_per_class=50)
    sel = budget.Selectors(vgg, data, seed=seed, grad_batches=2, fisher_batches=1,
                           search=dict(generations=1, population=4, parents=2, eval_images=200, recal_batches=2))
    out = {"dense": vgg}
    for b in budgets:
        for m in METHODS:
            chosen = sel.select(m, b)
            out[f"{m} @-{b:.0%}"] = (chosen if isinstance(chosen, torch.nn.Module) else surgery.remove_channels(vgg, chosen)).eval()
        # the same L1 selection with every width rounded up to a multiple of 8 or 16 (one AVX2 register holds 8
        # floats): its MACs grow a little, and its predicted speed-up is counted from them
        for multiple in ROUND:
            keep = select.round_widths(sel.l1_scores, sel.select("L1", b), multiple)
            out[f"L1 @-{b:.0%}, widths to x{multiple}"] = surgery.remove_channels(vgg, keep).eval()
    return out


def compiled(models):
    """``torch.compile`` of each model (inductor, the default backend: on the CPU it writes and compiles C++), checked
    to compute what eager PyTorch computes; the first call compiles, so it is made here, before any timing."""
    out = {}
    for k, m in models.items():
        c = torch.compile(m)
        x = torch.randn(1, *m.input_size, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        worst = (c(x) - m(x)).abs().max().item()
        assert worst < 1e-3, f"torch.compile and eager PyTorch disagree by {worst} on {k}"
        print(f"torch.compile {k}: {time.perf_counter() - start:.0f} s to compile", flush=True)
        out[k] = c
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.35, 0.7])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile (inductor, CPU) at batch 1 on 1 thread, for the dense model and L1 "
                             "at each budget (compiling takes about a minute per model)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(0)
    models = compressed_models(args.budgets)
    mac = {k: measure.macs(m) for k, m in models.items()}
    rows = {k: {"macs": mac[k], "predicted": mac["dense"] / mac[k], "measured": {}} for k in models}
    notes = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for runtime, batch, threads in SETTINGS + ([("torch.compile", 1, 1)] if args.compile else []):
            if runtime == "torch.compile":
                try:
                    runners = compiled({k: m for k, m in models.items()
                                        if k == "dense" or k.startswith("L1 @") and "widths" not in k})
                except Exception as err:       # no C++ compiler, an inductor failure: say so, keep the other settings
                    notes.append(f"torch.compile not timed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
                    print(notes[-1], flush=True)
                    continue
            elif runtime == "ONNX Runtime":
                runners = {k: deploy.OnnxModel(deploy.export_onnx(m, Path(tmp) / f"{i}-b{batch}.onnx", batch_size=batch,
                                                                  dynamo=False), threads=threads)
                           for i, (k, m) in enumerate(models.items())}
                worst = max(deploy.max_difference(models[k], r, batches=1) for k, r in runners.items())
                assert worst < 1e-3, f"ONNX Runtime and PyTorch disagree by {worst}"
            else:
                runners = models
            t = measure.latency_many(runners, batch_size=batch, threads=threads, runs=args.runs, warmup=5)
            setting = f"{runtime}, batch {batch}, {threads} thread{'s' if threads > 1 else ''}"
            for k in runners:
                rows[k]["measured"][setting] = {"median_ms": t[k]["median_ms"],
                                                "speedup": t["dense"]["median_ms"] / t[k]["median_ms"]}
            print(f"{setting}: dense {t['dense']['median_ms']:.2f} ms", flush=True)
    import onnxruntime

    from pruning.report import _environment
    record = {"rows": rows, "budgets": args.budgets, "runs": args.runs, "seconds": round(time.perf_counter() - start),
              "date": time.strftime("%Y-%m-%d"), "machine": {**_environment(), "onnxruntime": onnxruntime.__version__},
              "notes": notes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    from pruning.report import speed_table
    print(speed_table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
