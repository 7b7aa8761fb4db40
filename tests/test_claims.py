import pytest

from pruning import claims, report


def test_verdicts_follow_the_interval():
    assert claims.verdict([1.0, 1.2, 1.1], "above", 0.0) == claims.SUPPORTED
    assert claims.verdict([-1.0, -1.2, -1.1], "above", 0.0) == claims.CONTRADICTED
    assert claims.verdict([-1.0, 1.2, 0.1], "above", 0.0) == claims.NOT_RESOLVED
    assert claims.verdict([5.0], "above", 0.0) == claims.NOT_RESOLVED            # one seed: no interval
    assert claims.verdict([3.0, 3.5, 4.0], "at most", 0.14) == claims.CONTRADICTED
    assert claims.verdict([0.05, 0.1, 0.08], "at most", 0.14) == claims.SUPPORTED
    assert claims.verdict([0.0, 0.3, 0.1], "at most", 0.14) == claims.NOT_RESOLVED
    with pytest.raises(ValueError, match="rule"):
        claims.verdict([1.0, 2.0], "below", 0.0)


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=lambda c: f"{c.paper}: {c.claim[:30]}")
def test_every_claim_reads_a_quantity_the_lab_reference_runs_have(claim):
    """A renamed quantity would leave its claim without evidence ("no reference run") without any error."""
    assert claim.quantity in report.evidence(claim.notebook, "lab"), claim.quantity
    assert claim.rule in ("above", "at most")
