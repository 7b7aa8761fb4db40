import json

import pytest

from pruning import report


def test_save_and_render_key_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    row = {"quantity": "MACs removed", "paper": "35.3%", "ours": "36.0%", "tolerance": ">= 35%"}
    path = report.save("01_demo", [row], scale="lab")
    assert json.loads(path.read_text())["rows"] == [row]
    text = "before\n<!-- keynumbers:start -->\nold\n<!-- keynumbers:end -->\nafter\n"
    out = report.render(text)
    assert "old" not in out and "| 01_demo | MACs removed | 35.3% | 36.0% | >= 35% | lab |" in out
    assert out.startswith("before\n") and out.endswith("after\n")
    with pytest.raises(ValueError, match="lacks"):
        report.save("bad", [{"quantity": "x"}])


def test_full_scale_results_are_kept_beside_lab_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    row = {"quantity": "drop", "paper": "0.14", "ours": "1.0", "tolerance": "<= 2"}
    lab = report.save("01_demo", [row], scale="lab")
    full = report.save("01_demo", [{**row, "ours": "0.5"}], scale="full")
    assert lab.name == "01_demo.json" and full.name == "01_demo.full.json" and lab.exists()
    table = report.key_numbers_table()
    assert "| 1.0 | <= 2 | lab |" in table and "| 0.5 | <= 2 | full | set `SCALE = \"full\"`" in table


def test_pipes_in_values_are_escaped(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    report.save("01_demo", [{"quantity": "|g| / |w|", "paper": "-", "ours": "1 / 2", "tolerance": "|g| < |w|"}])
    line = report.key_numbers_table().splitlines()[2]
    assert "\\|g\\| / \\|w\\|" in line and line.count(" | ") == 6


def test_check_fails_on_a_stale_readme_and_passes_after_write(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- keynumbers:start -->\nstale\n<!-- keynumbers:end -->\n")
    monkeypatch.setattr(report, "README", readme)
    report.save("01_demo", [{"quantity": "q", "paper": "1", "ours": "2", "tolerance": "t"}])
    assert report.main(["--check"]) == 1 and "out of date" in capsys.readouterr().out
    assert report.main(["--write"]) == 0 and "| 01_demo | q | 1 | 2 | t | lab |" in readme.read_text()
    assert report.main(["--check"]) == 0
