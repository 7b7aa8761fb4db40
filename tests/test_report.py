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
