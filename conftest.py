"""pytest, for the unit tests and for nbval: every notebook's key checks are strict here (a miss fails the cell).
The kernels nbval starts inherit this environment; see pruning/checks.py."""
import json
import os
from pathlib import Path

os.environ.setdefault("PRUNING_STRICT_CHECKS", "1")
ROOT = Path(__file__).resolve().parent


def _reference_seconds(notebook: Path) -> float:
    """The median wall time of a notebook's committed lab reference runs (0 when it has none)."""
    seconds = sorted(json.loads(p.read_text()).get("seconds", 0)
                     for p in (ROOT / "results" / "runs" / notebook.stem).glob("lab-seed*.json"))
    return seconds[len(seconds) // 2] if seconds else 0.0


BROWSER = os.environ.get("PRUNING_BROWSER") == "1"


def pytest_ignore_collect(collection_path, config):
    """With PRUNING_BROWSER=1 (`make test` where Chromium is installed) the notebooks that show a widget run in a real
    browser (tests/test_browser.py: all cells, strict checks, and a widget moved) instead of under nbval, so that
    each runs once."""
    path = Path(str(collection_path))
    if BROWSER and path.suffix == ".ipynb" and path.parent.name == "notebooks":
        from pruning.reproduce import shows_widget
        return True if shows_widget(path) else None
    return None


def _notebook_of(item) -> Path | None:
    """The course notebook an item runs: an nbval cell of it, or its browser test."""
    path = Path(str(item.fspath))
    if path.suffix == ".ipynb":
        return path
    notebook = getattr(getattr(item, "cls", None), "notebook", "")
    return ROOT / "notebooks" / notebook if path.name == "test_browser.py" and notebook else None


def pytest_collection_modifyitems(session, config, items):
    """Longest notebooks first, by their reference runs' wall times, then the unit test files. `make test` runs two
    at a time, each worker taking the next scope when it is nearly done with one (pytest-xdist --dist loadscope,
    with --no-loadscope-reorder so that this order is kept): a long notebook started last would leave the other
    worker idle while it finishes, and the short unit files at the end fill the time one worker would otherwise
    wait for the other's last notebook. A scope is a notebook (its nbval cells, or its browser test's class) or a
    unit test module (or class). The sort is stable, so the cells of a notebook and the unit tests keep their order."""
    cache: dict[Path, float] = {}

    def seconds(notebook: Path) -> float:
        if notebook not in cache:
            cache[notebook] = _reference_seconds(notebook)
        return cache[notebook]

    items.sort(key=lambda item: -seconds(n) if (n := _notebook_of(item)) else 0.0)


def _retrying_kernel_start():
    """`make test` runs two notebooks at a time; two kernels started at the same moment can race for one TCP port
    (jupyter_client picks free ports before the kernel binds them), and the loser dies before it replies
    ("Kernel died before replying to kernel_info": seen once in about ten starts of three tiny notebooks at a time).
    A new start picks new ports, so nbval's kernel start gets up to three attempts."""
    try:
        import nbval.kernel as nbval_kernel
    except ImportError:
        return
    start = nbval_kernel.start_new_kernel

    def start_new_kernel(*args, **kwargs):
        for attempt in range(3):
            try:
                return start(*args, **kwargs)
            except RuntimeError:
                if attempt == 2:
                    raise

    nbval_kernel.start_new_kernel = start_new_kernel


_retrying_kernel_start()
