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
             ("07_detection_compression", "my_iou", "07_detection"),
             ("07_detection_compression", "my_ap", "07_detection")]


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
    namespace = {"selfcheck": selfcheck}
    exec(_solution(page, function), namespace)
    assert eval(_check_call(_stub_cell(notebook, function)), namespace) is True
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("notebook, function, page", EXERCISES)
def test_the_empty_stub_gets_a_message_not_a_traceback(notebook, function, page, capsys):
    # the cell as a student runs it first (after the notebook's setup cell has imported selfcheck): no error
    exec(_stub_cell(notebook, function), {"selfcheck": selfcheck})
    assert "No answer yet" in capsys.readouterr().out


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
