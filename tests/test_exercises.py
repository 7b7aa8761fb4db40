"""Both directions of every implementation exercise: the teachers' reference solution (a code block in
lessons/solutions/) passes its self-check, and the notebook's empty stub, run as a student would run it, ends with
the check's helpful message, not a traceback."""
import json
import re
from pathlib import Path

import pytest

from pruning import selfcheck

ROOT = Path(__file__).resolve().parents[1]

# (notebook, the stub's function name, solutions page)
EXERCISES = [("00_pruning_basics", "my_surgery", "00_basics"),
             ("01_gdp_gradient_pruning", "my_keep", "01_gdp"),
             ("02_sensitivity_channel_pruning", "my_hutchinson", "02_sensitivity"),
             ("03_statistics_pruning_tucker", "my_hosvd", "03_statistics_tucker"),
             ("04_automatic_mending", "my_repair", "04_mending"),
             ("05_sparse_binary_programming", "my_projection", "05_sparse_binary"),
             ("05_sparse_binary_programming", "my_sbp_step", "05_sparse_binary"),
             ("07_detection_compression", "my_iou", "07_detection"),
             ("07_detection_compression", "my_ap", "07_detection"),
             ("08_prune_your_own_model", "my_macs_after", "08_own_model")]


def _namespace():
    """What the notebooks' setup cells have imported by the time a student reaches an exercise."""
    import random

    import torch
    return {"selfcheck": selfcheck, "torch": torch, "random": random}


def _solution(page: str, function: str) -> str:
    text = (ROOT / "lessons" / "solutions" / f"{page}.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if f"def {function}(" in b]
    assert len(blocks) == 1, f"lessons/solutions/{page}.md should hold one python block defining {function}"
    return blocks[0]


def _stub_cell(notebook: str, function: str) -> str:
    nb = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
             and f"def {function}(" in "".join(c["source"])]
    assert len(cells) == 1, f"{notebook} should have one exercise cell defining {function}"
    return cells[0]


def _check_call(cell: str) -> str:
    """The self-check the stub cell ends with, e.g. ``selfcheck.check_surgery(my_surgery)``."""
    calls = re.findall(r"^(selfcheck\.check_\w+\(.*\));?\s*$", cell, re.M)
    assert calls, "the exercise cell should end with a selfcheck call"
    return calls[-1]


@pytest.mark.parametrize("notebook, function, page", EXERCISES)
def test_the_reference_solution_passes_its_check(notebook, function, page, capsys):
    namespace = _namespace()
    exec(_solution(page, function), namespace)
    assert eval(_check_call(_stub_cell(notebook, function)), namespace) is True
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("notebook, function, page", EXERCISES)
def test_the_empty_stub_gets_a_message_not_a_traceback(notebook, function, page, capsys):
    # the cell as a student runs it first (after the notebook's setup cell has imported selfcheck): no error
    exec(_stub_cell(notebook, function), _namespace())
    assert "No answer yet" in capsys.readouterr().out


@pytest.mark.parametrize("notebook, function, page", EXERCISES)
def test_a_function_that_raises_gets_a_one_line_report(notebook, function, page, capsys):
    def crashes(*args):
        raise IndexError("index 99 is out of bounds")
    namespace = {**_namespace(), function: crashes}
    assert eval(_check_call(_stub_cell(notebook, function)), namespace) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet. Your function raised IndexError: index 99 is out of bounds (on ") and "Traceback" not in out


def test_a_wrong_or_crashing_answer_gets_a_hint_not_a_traceback(capsys):
    namespace = {}
    exec(_solution("00_basics", "my_surgery"), namespace)
    right = namespace["my_surgery"]

    def forgets_running_stats(conv1, bn, conv2, keep):
        c1, b, c2 = right(conv1, bn, conv2, keep)
        b.running_mean, b.running_var = bn.running_mean[: len(keep)].clone(), bn.running_var[: len(keep)].clone()
        return c1, b, c2

    def crashes(conv1, bn, conv2, keep):
        return conv1.weight[keep, :, 99]

    assert selfcheck.check_surgery(forgets_running_stats) is False
    assert "running mean and running variance" in capsys.readouterr().out
    assert selfcheck.check_surgery(crashes) is False
    assert "Your function raised IndexError" in capsys.readouterr().out


def test_the_class_challenge_scores_the_baseline_and_refuses_what_misses_the_budget(tmp_path, cifar, capsys):
    """Notebook 06's challenge: the teachers' baseline meets -50% MACs on the course VGG and gets a score and a
    leaderboard line (run here on a small VGG with a tiny fine-tuning); the empty stub and a selection short of the
    budget get messages, not tracebacks."""
    import torch

    from pruning import models, select, zoo

    namespace = {}
    exec(_solution("06_capstone", "my_keep"), namespace)
    vgg = zoo.pretrained("vgg16-cifar10")
    assert select.macs_removed(vgg, namespace["my_keep"](vgg)) >= 0.5
    small = models.build("vgg11", width=0.25).eval()
    board = tmp_path / "board.jsonl"
    score = selfcheck.challenge(namespace["my_keep"](small), small, cifar, name="baseline", epochs=1, images=64,
                                board=board)
    assert 0.0 <= score <= 1.0 and board.read_text().count("\n") == 1 and "1. baseline" in capsys.readouterr().out
    from pruning import surgery
    one_less = {n: list(range(w - 1)) for n, w in surgery.widths(small).items()}     # far short of -50% MACs
    assert selfcheck.challenge(one_less, small, cifar, board=board) is None
    assert "the challenge asks for at least 50%" in capsys.readouterr().out
    stub = _stub_cell("06_capstone_comparison", "my_keep")
    exec(stub, {"selfcheck": selfcheck, "zoo": zoo, "torch": torch, "vgg": vgg,
                "cifar": zoo.dataset("vgg16-cifar10", test_per_class=250)})
    assert "No answer yet" in capsys.readouterr().out and board.read_text().count("\n") == 1


def test_the_speed_prediction_exercise_measures_and_answers_either_way(capsys):
    """Notebook 00's exercise 3: no prediction gets the 'No answer yet' message (and measures nothing); any number
    gets the measured and the FLOPs-predicted speed-up; one far off is 'Not yet'."""
    pytest.importorskip("onnxruntime")
    import torch

    from pruning import models, select, surgery
    from pruning.methods import baselines
    torch.manual_seed(0)
    dense = models.build("vgg11", width=0.25).eval()
    small = surgery.remove_channels(dense, select.keep_by_ratio(baselines.l1_scores(dense), 0.3))
    assert selfcheck.check_prediction(None, dense, small) is False and "No answer yet" in capsys.readouterr().out
    assert selfcheck.check_prediction(1000.0, dense, small, runs=5) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet.") and "ONNX Runtime measured" in out and "the FLOPs predict" in out
