"""The engine (data, models, surgery, select, measure, train, pipeline, methods, ...) imports no plotting, widget,
notebook-check or reporting code (reports, benchmarks and the claims table included): those serve the notebooks and the
README, the engine serves any program."""
import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pruning"
NOTEBOOK_SIDE = {"plots", "widgets", "selfcheck", "checks", "report", "reproduce", "calibrate", "bench", "claims"}
FORBIDDEN = {"matplotlib", "ipywidgets", "IPython", "papermill"}
ENGINE = sorted(p for p in [*PKG.glob("*.py"), *(PKG / "methods").glob("*.py")]
                if p.stem not in NOTEBOOK_SIDE and p.stem != "__main__")


def _imports(path: Path) -> set[str]:
    """Top-level names a module imports, package-relative imports resolved to the course's module names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:                      # from . import plots / from ..plots import x
                names |= {(node.module or a.name).split(".")[0] for a in node.names}
            else:
                names.add(node.module.split(".")[0])
                if node.module == "pruning":
                    names |= {a.name for a in node.names}
    return names


def test_engine_modules_import_no_notebook_side_code():
    offenders = {p.relative_to(PKG).as_posix(): sorted(_imports(p) & (NOTEBOOK_SIDE | FORBIDDEN)) for p in ENGINE}
    assert not {k: v for k, v in offenders.items() if v}, offenders
    # the check can fail: the notebook side itself does import plotting
    assert _imports(PKG / "plots.py") & FORBIDDEN


def test_importing_the_whole_engine_loads_no_notebook_side_module():
    """At run time too. (matplotlib itself may still appear: torchmetrics' detection module imports it.)"""
    mods = ", ".join(f"pruning.{p.stem}" if p.parent == PKG else f"pruning.methods.{p.stem}" for p in ENGINE)
    watched = sorted({f"pruning.{m}" for m in NOTEBOOK_SIDE} | {"ipywidgets", "IPython", "papermill"})
    code = f"import sys, importlib\nfor m in '{mods}'.split(', '): importlib.import_module(m)\n" \
           f"print(sorted(m for m in {watched!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing the engine loaded {out}"
