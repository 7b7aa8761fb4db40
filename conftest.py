"""pytest, for the unit tests and for nbval: every notebook's key checks are strict here (a miss fails the cell).
The kernels nbval starts inherit this environment; see pruning/checks.py."""
import os

os.environ.setdefault("PRUNING_STRICT_CHECKS", "1")
