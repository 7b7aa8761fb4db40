"""pytest, for the unit tests and for nbval: every notebook's key checks are strict here (a miss fails the cell).
The kernels nbval starts inherit this environment; see pruning/checks.py."""
import os

os.environ.setdefault("PRUNING_STRICT_CHECKS", "1")


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
