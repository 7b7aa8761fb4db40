"""The key-check runner (pruning/checks.py): strict stops at the first miss, a student's run reports and goes on."""
import pytest

from pruning import checks

CELL = """x = 3
assert x == 3
assert x > 5, f"x = {x}"
for v in (1, 2):
    assert v < 2, v
after = x + 1
after
"""


def test_strict_mode_raises_at_the_first_miss_like_a_plain_assert():
    ns = {}
    with pytest.raises(AssertionError, match="x = 3"):
        checks.run(CELL, ns, strict_mode=True)
    assert "after" not in ns    # nothing after the miss ran


def test_a_students_run_reports_each_miss_and_runs_the_rest():
    ns, shown = {}, []
    out = checks.run(CELL, ns, strict_mode=False, display=shown.append, line_offset=1)
    assert out.passed == 1 and [m[0] for m in out.missed] == [4, 5]   # line numbers as the notebook shows them
    assert out.missed[0][1] == 'assert x > 5, f"x = {x}"' and out.missed[0][2] == "x = 3"
    assert ns["after"] == 4 and shown == [4]                        # the rest ran; the last value is shown
    text = out.summary()
    assert "1 of 3 passed, 2 missed" in text and "line 4: assert x > 5" in text and "saw: x = 3" in text


def test_all_passed_and_errors_that_are_not_misses():
    assert checks.run("assert 1 == 1\ny = 2\n", {}, strict_mode=False).summary() == "Key checks: all 1 passed."
    with pytest.raises(NameError):   # a bug in the cell is never swallowed
        checks.run("assert undefined_name\n", {}, strict_mode=False)
    with pytest.raises(AssertionError):   # an AssertionError from a statement that is not a check is not a miss
        checks.run("def f():\n    raise AssertionError('inside')\nf()\n", {}, strict_mode=False)


def test_a_reference_check_counts_as_a_check():
    class Report:
        @staticmethod
        def check_reference(value):
            assert value < 1, f"{value} outside the reference range"
            return "inside"
    out = checks.run("report.check_reference(0.5)\nreport.check_reference(2)\n", {"report": Report}, strict_mode=False)
    assert out.passed == 1 and "outside the reference range" in out.missed[0][2]


def test_strict_follows_the_environment(monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV, "1")
    assert checks.strict()
    monkeypatch.setenv(checks.STRICT_ENV, "0")
    assert not checks.strict()
    monkeypatch.delenv(checks.STRICT_ENV)
    assert not checks.strict()


def test_every_notebook_checks_the_same_way():
    """One way in every notebook: the setup imports pruning.checks, and every cell that checks is %%key_checks."""
    import json
    from pathlib import Path
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        code = ["".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
        setup = next(s for s in code if "from pruning import" in s)
        assert "checks" in setup.split("from pruning import", 1)[1].splitlines()[0], path.name
        with_asserts = [s for s in code if "\nassert " in "\n" + s or "check_reference(" in s]
        assert with_asserts and all(s.startswith("%%key_checks\n") for s in with_asserts), path.name
