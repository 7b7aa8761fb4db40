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


def pytest_collection_modifyitems(session, config, items):
    """Longest notebooks first, by their reference runs' wall times, then the unit test files. `make test` runs two
    files at a time, each worker taking the next when it is nearly done with one (pytest-xdist --dist loadfile, with
    --no-loadscope-reorder so that this order is kept): a long notebook started last would leave the other worker
    idle while it finishes, and the short unit files at the end fill the time one worker would otherwise wait for
    the other's last notebook. The sort is stable, so the cells of a notebook and the unit tests keep their order."""
    cache: dict[Path, float] = {}

    def key(item):
        path = Path(str(item.fspath))
        if path.suffix != ".ipynb":
            return 0.0
        if path not in cache:
            cache[path] = _reference_seconds(path)
        return -cache[path]

    items.sort(key=key)


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
