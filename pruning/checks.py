"""Key-number checks that hold the course to its numbers without blocking a student.

Every notebook has one cell of key checks: ``assert`` statements on the numbers it reproduces (budgets met,
accuracies inside the reference runs' range, ...). They must stop the course's CI and every reference run when one
misses. A student's own "Run all" is another matter: a laptop or a Colab machine times a model more noisily than
the course's CI, and one missed latency check must not stop the notebook before its exercises.

So the check cell starts with the cell magic ``%%key_checks`` (registered when this module is imported inside
IPython). It runs the cell one top-level statement at a time:

* in **strict** mode (the environment variable ``PRUNING_STRICT_CHECKS=1``, which ``make test``, nbval through the
  repository's ``conftest.py``, and ``python -m pruning.reproduce`` set), the first missed check raises, as a plain
  ``assert`` would;
* otherwise each missed check is reported (the check's own line, which states the expected range, and the values
  it saw) and the rest of the cell, and of the notebook, runs on.

An error that is not an ``AssertionError`` (a typo, a missing variable) always raises: it is a bug, not a miss.
"""

from __future__ import annotations

import ast
import itertools
import linecache
import os
from dataclasses import dataclass, field

STRICT_ENV = "PRUNING_STRICT_CHECKS"
_cells = itertools.count(1)


def strict() -> bool:
    """True where a missed check must stop the run (CI, nbval, reference runs)."""
    return os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "no")


@dataclass
class Outcome:
    """What one check cell did: how many top-level statements held a check, and the ones that missed."""

    passed: int = 0
    missed: list[tuple[int, str, str]] = field(default_factory=list)   # (line, the check's source, what it saw)

    def summary(self) -> str:
        total = self.passed + len(self.missed)
        if not self.missed:
            return f"Key checks: all {total} passed."
        lines = [f"Key checks: {self.passed} of {total} passed, {len(self.missed)} missed (reported, not stopped: "
                 f"set {STRICT_ENV}=1 to stop at the first miss, as the course's CI does)."]
        for line, source, seen in self.missed:
            lines.append(f"  missed, line {line}: {source}" + (f"\n      saw: {seen}" if seen else ""))
        lines.append("A miss in your own run usually means another machine's timing or another seed's noise; "
                     "the README's reference runs show the range the course measured.")
        return "\n".join(lines)


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _calls_check(node: ast.AST) -> bool:
    """Statements that call ``report.check_reference`` (which raises AssertionError on a miss) count as checks."""
    return any(isinstance(n, ast.Attribute) and n.attr == "check_reference" for n in ast.walk(node))


def run(source: str, namespace: dict, strict_mode: bool | None = None, display=None, line_offset: int = 0) -> Outcome:
    """Execute ``source`` in ``namespace`` statement by statement (module level), counting checks.

    A statement that raises ``AssertionError`` is a missed check: re-raised in strict mode, recorded otherwise.
    A final bare expression is shown with ``display`` (as IPython shows a cell's last value). ``line_offset`` is
    added to the reported line numbers (the magic's own line, above the cell's code).
    """
    strict_mode = strict() if strict_mode is None else strict_mode
    filename = f"<key checks {next(_cells)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)   # tracebacks show the code
    tree = ast.parse(source, filename=filename, mode="exec")
    lines = source.splitlines()
    outcome = Outcome()
    for i, node in enumerate(tree.body):
        last_expr = i == len(tree.body) - 1 and isinstance(node, ast.Expr)
        is_check = _has_assert(node) or _calls_check(node)
        try:
            if last_expr:
                value = eval(compile(ast.Expression(node.value), filename, "eval"), namespace)
                if value is not None and display is not None:
                    display(value)
            else:
                exec(compile(ast.Module([node], type_ignores=[]), filename, "exec"), namespace)
        except AssertionError as exc:
            if strict_mode or not is_check:
                raise
            outcome.missed.append((node.lineno + line_offset, lines[node.lineno - 1].strip(), str(exc)[:300]))
            continue
        if is_check:
            outcome.passed += 1
    return outcome


def _register() -> None:
    """Register ``%%key_checks`` in a running IPython (a no-op elsewhere)."""
    try:
        from IPython import get_ipython
    except ImportError:   # no IPython: plain Python never sees the magic
        return
    shell = get_ipython()
    if shell is None:
        return
    from IPython.display import display

    def key_checks(line, cell):
        outcome = run(shell.transform_cell(cell), shell.user_ns, display=display, line_offset=1)
        print(outcome.summary())

    shell.register_magic_function(key_checks, magic_kind="cell", magic_name="key_checks")


_register()
