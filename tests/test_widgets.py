import pytest

from pruning import selfcheck
from pruning.models import build
from pruning.widgets import SparsityExplorer


def test_sparsity_explorer_updates_on_value(mnist):
    model = build("lenet5").eval()
    ex = SparsityExplorer(model, mnist, limit=50)
    ex.slider.value = 0.5
    assert ex.sparsity == pytest.approx(0.5, abs=0.01)
    assert ex.accuracy == ex.history[0.5]
    ex.slider.value = 0.9
    assert ex.sparsity == pytest.approx(0.9, abs=0.01)
    assert set(ex.history) == {0.5, 0.9}
    hist, curve = ex.figure.axes  # the redrawn figure shows the new state
    assert "90%" in hist.get_title() and f"{ex.accuracy:.1%}" in curve.get_title()
    assert len(curve.lines[0].get_xdata()) == 2


def test_selfchecks_accept_right_and_reject_wrong(capsys):
    right = 64 * 32 * 9 * 16 * 16
    assert selfcheck.check_conv_macs(right, 32, 64, 3, 16)
    assert not selfcheck.check_conv_macs(right // 2, 32, 64, 3, 16)
    assert "Not yet" in capsys.readouterr().out
    saved = 16 * 32 * 9 * 16 * 16 + 64 * 16 * 9 * 16 * 16
    assert selfcheck.check_pruned_macs(saved, 32, 64, 3, 16, removed=16, next_c_out=64)
    assert not selfcheck.check_pruned_macs(16 * 32 * 9 * 16 * 16, 32, 64, 3, 16, removed=16, next_c_out=64)
    assert not selfcheck.check_conv_macs(None, 32, 64, 3, 16)
    assert "No answer yet" in capsys.readouterr().out
