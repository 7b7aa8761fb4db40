"""pruning.reproduce on a tiny notebook: parameters injected, results file written with the run's record, the
committed notebook untouched, runs already done skipped, and a failing assert leaving no results file."""
import json

import nbformat
import pytest

from pruning import report, reproduce


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('SCALE = "lab"\nSEED = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("from pruning import checks, report"), nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


BODY = """%%key_checks
saved = report.save("01_tiny", [report.number("twice the seed", 2 * SEED, unit="")], scale=SCALE, seed=SEED, seconds=0)
assert SEED < 5, "seeds from 5 on fail on purpose, after saving"
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    path = _notebook(nbs / "01_tiny.ipynb", BODY)
    monkeypatch.setattr(report, "NOTEBOOKS_DIR", nbs)
    monkeypatch.setattr(reproduce, "NOTEBOOKS", nbs)
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(reproduce, "EXECUTED", tmp_path / "build")
    monkeypatch.setattr(report, "ROOT", tmp_path)
    return path


def test_a_reference_run_records_its_parameters_and_leaves_the_notebook_alone(tiny, capsys):
    before = tiny.read_text()
    assert reproduce.main(["01", "--seeds", "2", "3"]) == 0
    assert tiny.read_text() == before
    runs = report.load_runs("01_tiny")
    assert [r["seed"] for r in runs] == [2, 3] and [r["rows"][0]["value"] for r in runs] == [4.0, 6.0]
    run = runs[0]["run"]
    assert run["wall_seconds"] > 0 and run["papermill"] and runs[0]["environment"]["threads"] >= 1
    assert (report.ROOT / run["executed"]).exists()
    # done runs are skipped unless forced
    assert reproduce.main(["01_tiny", "--seeds", "2"]) == 0 and "skip 01_tiny lab seed 2" in capsys.readouterr().out


def test_a_failing_assert_writes_no_results_and_fails_the_command(tiny, capsys, monkeypatch):
    monkeypatch.delenv("PRUNING_STRICT_CHECKS", raising=False)   # a reference run is strict whatever the shell says
    assert reproduce.main(["01", "--seeds", "7"]) == 1
    assert not report.run_path("01_tiny", "lab", 7).exists() and not list(report.RESULTS_DIR.rglob("*.pending"))
    assert "FAILED 01_tiny lab seed 7" in capsys.readouterr().out


def test_unknown_notebook_names_are_refused(tiny):
    with pytest.raises(SystemExit, match="no single notebook matches"):
        reproduce.notebooks(["99"])


def test_html_copies_for_teachers_keep_the_committed_results(tiny, monkeypatch):
    monkeypatch.setattr(reproduce, "HTML", report.ROOT / "build" / "html")
    assert reproduce.main(["01", "--seeds", "4"]) == 0
    results = report.run_path("01_tiny", "lab", 4)
    before = results.read_text()
    reproduce.executed_path("01_tiny", "lab", 4).unlink()       # a fresh clone: results committed, no executed copy
    assert reproduce.main(["01", "--seeds", "4", "--html"]) == 0
    page = report.ROOT / "build" / "html" / "01_tiny.lab-seed4.html"
    html = page.read_text()
    assert "<html" in html.lower() and "fail on purpose, after saving" in html and results.read_text() == before


def test_a_students_run_reports_the_miss_and_goes_on(tmp_path, monkeypatch):
    """The same cell in a student's kernel (not strict): the miss is reported, the cells after it run."""
    import papermill as pm
    path = _notebook(tmp_path / "student.ipynb", BODY.replace("01_tiny", "student") + "after = 1\n")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('reached the exercises', after)"))
    nbformat.write(nb, path)
    monkeypatch.setenv("PRUNING_STRICT_CHECKS", "0")
    monkeypatch.setenv(report.RUN_OUT, str(tmp_path / "student.json"))
    out = pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"), parameters={"SEED": 7}, kernel_name="python3",
                              progress_bar=False)
    text = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert "0 of 1 passed, 1 missed" in text and "seeds from 5 on fail on purpose" in text
    assert "reached the exercises 1" in text


def test_a_hung_cell_fails_its_run_and_the_command_goes_on(tiny, tmp_path, capsys, monkeypatch):
    """A cell past CELL_TIMEOUT fails its run (no results file) instead of hanging the command; the next run works."""
    marker = tmp_path / "hung-once"
    nb = nbformat.read(tiny, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(f"""import pathlib, time
marker = pathlib.Path({str(marker)!r})
if not marker.exists():          # the first run hangs, as a lost kernel message would
    marker.touch()
    time.sleep(600)"""))
    nbformat.write(nb, tiny)
    monkeypatch.setattr(reproduce, "CELL_TIMEOUT", {"lab": 15, "full": 15})   # a busy machine needs seconds to import torch
    assert reproduce.main(["01", "--seeds", "1", "2"]) == 1
    assert "FAILED 01_tiny lab seed 1" in capsys.readouterr().out
    assert [r["seed"] for r in report.load_runs("01_tiny")] == [2]
