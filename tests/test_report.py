import json

import pytest

from pruning import report


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path / "results")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "01_demo.ipynb").write_text("{}")
    monkeypatch.setattr(report, "NOTEBOOKS_DIR", nbs)
    monkeypatch.delenv(report.RUN_OUT, raising=False)
    return tmp_path / "results"


def _run(seed, flops, a_right, b_right, n=100, scale="lab", monkeypatch=None, path=None):
    """A fake reference run: a FLOPs number and a paired comparison with a_right / b_right images correct."""
    ca = [True] * a_right + [False] * (n - a_right)
    cb = [True] * b_right + [False] * (n - b_right)
    rows = [report.number("FLOPs removed", flops, paper="35.3%", paper_value=35.3, asserted="35% <= x"),
            report.paired("test after fine-tuning", "GDP", "L1", ca, cb, asserted="reported")]
    return rows


def _write(results, monkeypatch, seed, rows, scale="lab"):
    out = report.run_path("01_demo", scale, seed)
    monkeypatch.setenv(report.RUN_OUT, str(out))
    report.save("01_demo", rows, scale=scale, seed=seed)
    monkeypatch.delenv(report.RUN_OUT)
    return out


def test_live_runs_go_to_the_ignored_folder_and_reference_runs_where_told(results, monkeypatch):
    rows = _run(0, 0.35, 80, 75)
    live = report.save("01_demo", rows, scale="lab", seed=0)
    assert live == results / "live" / "01_demo.lab.json"
    rec = json.loads(live.read_text())
    assert rec["rows"] == rows and rec["environment"]["threads"] >= 1 and "torch" in rec["environment"]
    ref = _write(results, monkeypatch, 3, rows)
    assert ref == results / "runs" / "01_demo" / "lab-seed3.json" and ref.exists()
    with pytest.raises(ValueError, match="report.number"):
        report.save("bad", [{"quantity": "x", "ours": "1"}])
    with pytest.raises(ValueError, match="unit"):
        report.number("q", 1.0, unit="percent")


def test_evidence_aggregates_over_seeds_with_interval_and_label(results, monkeypatch):
    for seed, (flops, a, b) in enumerate([(0.340, 80, 75), (0.342, 81, 74), (0.341, 79, 76)]):
        _write(results, monkeypatch, seed, _run(seed, flops, a, b))
    ev = report.evidence("01_demo")
    flops = ev["FLOPs removed"]
    assert flops.summary.n == 3 and flops.summary.mean == pytest.approx(0.341)
    assert flops.label == "differs from the paper (resolved)"        # 34.1 +- 0.1 excludes 35.3
    cmp_ = ev["test after fine-tuning"]
    assert sorted(cmp_.values.values()) == pytest.approx([0.03, 0.05, 0.07])
    assert cmp_.interval.low > 0 and cmp_.label == "resolved" and len(cmp_.p_values) == 3
    text = report.describe(cmp_)
    assert text.startswith("GDP - L1 = +5.0 pts +- 2.0 sd, 95% CI [+0.0, +10.0] (n = 3)")
    assert "McNemar p by seed:" in text and "(seed 2)" in text


def test_a_noisy_comparison_is_not_resolved_and_one_seed_never_is(results, monkeypatch):
    for seed, (a, b) in enumerate([(80, 78), (77, 79), (80, 79)]):
        _write(results, monkeypatch, seed, _run(seed, 0.35, a, b))
    assert report.evidence("01_demo")["test after fine-tuning"].label == "not resolved at this budget"
    _write(results, monkeypatch, 0, _run(0, 0.35, 90, 60), scale="full")
    full = report.evidence("01_demo", "full")["test after fine-tuning"]
    assert full.label == "not resolved at this budget" and "[n/a: one seed]" in report.describe(full)


def test_table_shows_both_scales_and_check_catches_a_stale_readme(results, monkeypatch, capsys, tmp_path):
    for seed in range(3):
        _write(results, monkeypatch, seed, _run(seed, 0.35 + seed / 1000, 80 + seed, 75))
    table = report.key_numbers_table()
    line = next(l for l in table.splitlines() if "test after fine-tuning" in l)
    assert "(n = 3)" in line and "| - |" in line and "resolved; -" in line   # no full-scale runs: a dash
    assert "35.1% +- 0.1 sd (n = 3)" in table
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- keynumbers:start -->\nstale\n<!-- keynumbers:end -->\n")
    monkeypatch.setattr(report, "README", readme)
    assert report.main(["--check"]) == 1 and "out of date" in capsys.readouterr().out
    assert report.main(["--write"]) == 0 and "(n = 3)" in readme.read_text()
    assert report.main(["--check"]) == 0


def test_check_reference_accepts_the_range_and_refuses_an_outlier(results, monkeypatch):
    assert "no reference runs" in report.check_reference("01_demo", "FLOPs removed", 0.9, 0.01)
    for seed in range(3):
        _write(results, monkeypatch, seed, _run(seed, 0.35 + seed / 100, 80, 75))
    assert "inside" in report.check_reference("01_demo", "FLOPs removed", 0.375, 0.01)
    with pytest.raises(AssertionError, match="outside"):
        report.check_reference("01_demo", "FLOPs removed", 0.40, 0.01)
    # the run's own seed is left out of its reference when asked
    assert "n = 2" in report.check_reference("01_demo", "FLOPs removed", 0.36, 0.01, exclude_seed=2)
    assert report.reference_values("01_demo", "test after fine-tuning", part="value_b") == {0: .75, 1: .75, 2: .75}


def test_pipes_in_quantities_are_escaped(results, monkeypatch):
    _write(results, monkeypatch, 0, [report.number("|g| / |w|", 0.5)])
    line = report.key_numbers_table().splitlines()[2]
    assert "\\|g\\| / \\|w\\|" in line and line.count(" | ") == 6


def test_the_papers_rounding_widens_its_value(results, monkeypatch):
    """A deterministic 35.27% against a paper's 35.3 (which stands for anything in [35.25, 35.35]) is not called a
    difference; 35.2% is."""
    for value, label in ((0.3527, "paper's value not excluded"), (0.352, "differs from the paper (resolved)")):
        for seed in range(3):
            _write(results, monkeypatch, seed, [report.number("FLOPs", value, paper_value=35.3)])
        assert report.evidence("01_demo")["FLOPs"].label == label
    assert report._rounding(35.3) == pytest.approx(0.05) and report._rounding(0.14) == pytest.approx(0.005)
    assert report._rounding(2.0) == pytest.approx(0.5)



def test_the_criterion_allocation_table_reads_the_experiments_quantities(results, monkeypatch):
    """The README's criterion x allocation table parses the quantities benchmarks/criterion_allocation.py writes:
    a change of wording in one would empty the table, so both are tested together."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("ca", Path(__file__).parents[1] / "benchmarks" / "criterion_allocation.py")
    ca = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ca)
    n = 200
    for seed, gap in enumerate((10, 12, 11)):
        right = {("L1", "uniform"): 150, ("GDP", "uniform"): 150 - gap, ("L1", "global, max"): 149,
                 ("GDP", "global, max"): 140 + seed}
        hits = {k: [True] * v + [False] * (n - v) for k, v in right.items()}
        rows = [report.number(ca.accuracy_quantity(0.35, c, a), v / n) for (c, a), v in right.items()]
        rows += [report.paired(ca.criteria_quantity(0.35, a, "GDP", "L1"), "GDP", "L1", hits[("GDP", a)], hits[("L1", a)])
                 for a in ("uniform", "global, max")]
        rows += [report.paired(ca.allocation_quantity(0.35, c, "global, max"), "global, max", "uniform",
                               hits[(c, "global, max")], hits[(c, "uniform")]) for c in ("L1", "GDP")]
        out = report.run_path(ca.NAME, "lab", seed)
        monkeypatch.setenv(report.RUN_OUT, str(out))
        report.save(ca.NAME, rows, scale="lab", seed=seed)
        monkeypatch.delenv(report.RUN_OUT)
    text = report.allocation_table()
    assert "over seeds 0, 1, 2 (n = 3)" in text
    assert "| -35% | GDP | 69.5% +- 0.5 | 70.5% +- 0.5 |" in text          # (150 - 11) / 200 and (140 + 1) / 200
    assert "| -35% | uniform | -5.5 [" in text and "resolved" in text        # GDP - L1 under the uniform rule
    assert "| -35% | L1 | -0.5 [-0.5, -0.5], resolved |" in text             # global, max - uniform, every seed alike
    assert report.allocation_table(budget=35) == text                          # one budget: the same rows here
    assert report.allocation_table(budget=70).startswith("Not measured yet")   # none at -70%
    gaps = report.allocation_differences(35)
    assert report.difference_text(gaps[("L1", "global, max - uniform")]) == "-0.5 [-0.5, -0.5], resolved"
    assert gaps[("uniform", "GDP - L1")].summary.mean == pytest.approx(-0.055)
    words = report.allocation_summary(35)
    assert "under **uniform**" in words and "-0.5 [-0.5, -0.5], resolved for **L1**" in words
    assert report.allocation_summary(70) == ""


def test_a_benchmark_seed_is_saved_once_and_aggregated_like_a_reference_run(results, capsys):
    import time
    from pruning import bench
    calls = []

    def run(seed):
        calls.append(seed)
        rows = [report.number("demo benchmark: a fraction", 0.5 + seed / 100)]
        return bench.save("demo_bench", rows, seed, time.perf_counter(), f"demo --seeds {seed}", data={"x": seed},
                          recipe={"epochs": 1})

    assert bench.main("demo_bench", run, "demo", ["--seeds", "0", "1"]) == 0
    assert bench.main("demo_bench", run, "demo", ["--seeds", "1"]) == 0          # exists: skipped
    assert calls == [0, 1] and "seed 1: lab results exist" in capsys.readouterr().out
    saved = report.load_runs("demo_bench", "lab")
    assert [r["seed"] for r in saved] == [0, 1] and saved[1]["run"]["recipe"] == {"epochs": 1}
    assert saved[0]["data"] == {"x": 0} and saved[0]["run"]["command"] == "demo --seeds 0"
    ev = report.evidence("demo_bench", "lab")["demo benchmark: a fraction"]
    assert ev.summary.n == 2 and ev.summary.mean == pytest.approx(0.505)
    assert report.RUN_OUT not in __import__("os").environ


def test_a_benchmark_with_a_full_recipe_takes_scale_and_writes_full_runs(results, capsys):
    import time
    from pruning import bench
    calls = []

    def run(seed, scale):
        calls.append((seed, scale))
        rows = [report.number("demo benchmark: a fraction", {"lab": 0.5, "full": 0.9}[scale])]
        return bench.save("demo_scaled", rows, seed, time.perf_counter(), f"demo --scale {scale}", scale=scale)

    scales = ("lab", "full")
    assert bench.main("demo_scaled", run, "demo", ["--seeds", "0", "--scale", "full"], scales=scales) == 0
    assert bench.main("demo_scaled", run, "demo", ["--seeds", "0"], scales=scales) == 0       # lab: not run yet
    assert bench.main("demo_scaled", run, "demo", ["--seeds", "0", "--scale", "full"], scales=scales) == 0  # exists
    assert calls == [(0, "full"), (0, "lab")] and "seed 0: full results exist" in capsys.readouterr().out
    assert report.evidence("demo_scaled", "full")["demo benchmark: a fraction"].summary.mean == pytest.approx(0.9)
    assert report.evidence("demo_scaled", "lab")["demo benchmark: a fraction"].summary.mean == pytest.approx(0.5)
    assert report.load_runs("demo_scaled", "full")[0]["scale"] == "full"
    both = report.both_scales("demo_scaled", lambda scale: report.evidence_table("demo_scaled", scale))
    lab, full = both.split("**Full scale**")
    assert "50.0%" in lab and "90.0%" not in lab and "90.0%" in full and "seed 0;" in full
    assert "Full scale" not in report.both_scales("demo_bench", lambda scale: scale)   # no full runs: lab only
    assert report.full_scale_heading([{"seed": 0}], "a recipe") == \
        "**Full scale** (a recipe, seed 0; one seed gives no interval, so no verdict)"
    assert report.full_scale_heading([{"seed": 0}, {"seed": 1}]) == "**Full scale** (seeds 0, 1)"
    with pytest.raises(SystemExit):                            # a lab-only benchmark has no --scale
        bench.main("demo_bench", lambda seed: None, "demo", ["--scale", "full"])


def test_allocation_cuts_draws_one_line_per_allocation():
    import matplotlib
    matplotlib.use("Agg")
    from pruning import plots
    widths = {"features.0": 32, "features.3": 32}
    run = {"seed": 4, "data": {"0.35": {f"{c} | {a}": {"widths": {"features.0": 16, "features.3": 8}}
                                         for c in ("GDP", "L1") for a in ("uniform", "global, max")}}}
    ax = plots.allocation_cuts(run, 0.35, widths)
    assert [line.get_label() for line in ax.lines] == ["uniform", "global, max"]
    assert list(ax.lines[0].get_ydata()) == [0.5, 0.25] and "seed 4" in ax.get_title() and "-35%" in ax.get_title()


def test_evidence_table_lists_a_benchmarks_quantities_with_labels(results, monkeypatch):
    assert report.evidence_table("demo_bench") == "No runs of `demo_bench` at scale 'lab' yet."
    for seed, (a, b) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.81, 0.69)]):
        out = report.run_path("demo_bench", "lab", seed)
        monkeypatch.setenv(report.RUN_OUT, str(out))
        report.save("demo_bench", [report.number("rank correlation | x", 0.5 + seed / 10, unit="", digits=2),
                                   report.difference("gap at 70%", "A", "B", a, b)], scale="lab", seed=seed)
        monkeypatch.delenv(report.RUN_OUT)
    table = report.evidence_table("demo_bench").splitlines()
    assert table[:2] == ["| quantity | over the seeds | label |", "|---|---|---|"] and len(table) == 4
    assert table[2].startswith("| rank correlation \\| x | 0.60 +- 0.10 sd (n = 3) | - |")
    assert "A - B = +11.0" in table[3] and table[3].endswith("| resolved |")
    assert report.evidence_table("demo_bench", contains="gap").count("\n") == 2      # the header and one row


def test_candidates_marks_the_winner_and_the_pre_pruned_structure():
    import matplotlib
    matplotlib.use("Agg")
    from pruning import plots
    cands = [{"search": 0.6, "rescore": 0.55, "winner": True, "pre_pruned": False, "test_finetuned": 0.8},
             {"search": 0.5, "rescore": 0.56, "winner": False, "pre_pruned": True, "test_finetuned": 0.79},
             {"search": 0.4, "rescore": 0.45, "winner": False, "pre_pruned": False}]        # not fine-tuned
    runs = [{"seed": 0, "data": {"0.70": {"candidates": cands}}}]
    ax = plots.candidates(runs, "0.70", "search", "test_finetuned")
    points = ax.collections[0].get_offsets()
    assert points.tolist() == [[60.0, 80.0], [50.0, 79.0]]                 # the candidate without y is left out
    assert [c.get_offsets().tolist() for c in ax.collections[1:3]] == [[[60.0, 80.0]], [[50.0, 79.0]]]
    assert len(plots.candidates(runs, "0.70", "search", "rescore").collections[0].get_offsets()) == 3


def test_runs_record_and_the_runs_table_shows_the_cpu_kind(results, monkeypatch):
    """A run records the vector instructions torch used; the table lists each kind over a folder's runs, and
    "not recorded" for a run from before the field existed."""
    import torch
    path = _write(results, monkeypatch, 0, _run(0, 0.35, 80, 75))
    kind = json.loads(path.read_text())["environment"]["cpu_capability"]
    assert kind == torch.backends.cpu.get_cpu_capability()
    old = _write(results, monkeypatch, 1, _run(1, 0.35, 80, 75))
    rec = json.loads(old.read_text())
    del rec["environment"]["cpu_capability"]
    old.write_text(json.dumps(rec))
    line = next(l for l in report.runs_table().splitlines() if l.startswith("| 01_demo"))
    assert f"({' / '.join(sorted([kind, 'not recorded']))})" in line, line


def test_key_numbers_end_with_the_speed_benchmarks_onnx_rows(results, tmp_path):
    """Each structured model of benchmarks/speed.py gets a key-numbers row: its ONNX Runtime speed-up at batch 1
    beside the FLOPs-predicted one; the hybrid's carries the paper's 1.4x; no file, no rows."""
    assert report._speed_key_rows(tmp_path / "missing.json") == []
    setting = report.SPEED_KEY_SETTING
    speed = {"rows": {"dense": {"macs": 100, "predicted": 1.0, "measured": {setting: {"speedup": 1.0}}},
                      "L1 @-35%": {"macs": 64, "predicted": 1.5625, "measured": {setting: {"speedup": 1.25}}},
                      "hybrid @-70%": {"macs": 30, "predicted": 3.3, "measured": {"other": {"speedup": 2.0}}},
                      "hybrid @-35%": {"macs": 64, "predicted": 1.5, "measured": {setting: {"speedup": 1.2}}}},
             "date": "2026-12-02"}
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(speed))
    rows = report._speed_key_rows(path)
    assert len(rows) == 2                                            # dense and a model without the setting: none
    assert "L1 @-35%" in rows[0] and "1.25x, 0.80 of predicted" in rows[0] and "(FLOPs-predicted 1.56x)" in rows[0]
    assert "1.4x (Raspberry Pi 4B" in rows[1] and "| - |" in rows[0]


def test_choose_structure_scores_only_what_meets_the_target_and_keeps_the_best(capsys):
    from pruning import bench
    structures = [dict(n=1), dict(n=2), dict(n=3)]
    removed = {1: 0.50, 2: 0.60, 3: 0.70}                     # structure 1 misses the 54% target
    scores = {1: 0.99, 2: 0.80, 3: 0.85}
    scored = []

    def score(model, name):
        scored.append(name)
        return scores[model]

    grid, rows, winner = bench.choose_structure(structures, lambda s: f"n {s['n']}", lambda s: (s["n"], removed[s["n"]]),
                                                score, 0.54, "demo", "val accuracy", seed=0)
    assert scored == ["n 2", "n 3"] and winner["structure"] == dict(n=3)   # the best qualifying one, not 1's 0.99
    assert not grid["n 1"]["qualifies"] and "val" not in grid["n 1"]
    assert [r["quantity"] for r in rows] == ["demo, n 1: storage removed", "demo, n 2: val accuracy",
                                             "demo, n 2: storage removed", "demo, n 3: val accuracy",
                                             "demo, n 3: storage removed"]
    with pytest.raises(ValueError, match="no structure removes"):
        bench.choose_structure(structures[:1], str, lambda s: (1, 0.1), score, 0.54, "demo", "val", seed=0)


def test_choose_rates_scores_every_rate_on_a_fresh_model_and_keeps_the_best():
    """The shared rate step: a fresh copy per measurement (fine-tuning works in place), known scores reused, the
    best rate per model, one row per (model, rate) in increasing rate order."""
    from pruning import bench
    built, seen = [], []

    def fresh(name):
        def make():
            built.append(name)
            return {"name": name, "trained": 0}
        return make

    def score(model, lr, name):
        assert model["trained"] == 0, "a model was reused after fine-tuning"
        model["trained"] += 1
        seen.append((model["name"], lr))
        return {"a": {0.1: 0.5, 0.3: 0.7}, "b": {0.1: 0.6, 0.3: 0.4, 1.0: 0.2}}[model["name"]].get(lr, 0.0)

    by_rate, rows, chosen = bench.choose_rates({"a": fresh("a"), "b": fresh("b")}, (1.0, 0.1, 0.3), score,
                                               lambda m, lr: f"{m} at lr {lr}", known={"a": {1.0: 0.9}})
    assert chosen == {"a": 1.0, "b": 0.1}                          # a's known score at 1.0 is its best
    assert ("a", 1.0) not in seen and len(seen) == 5 and built.count("a") == 2 and built.count("b") == 3
    assert [r["quantity"] for r in rows] == ["a at lr 0.1", "a at lr 0.3", "a at lr 1.0", "b at lr 0.1", "b at lr 0.3",
                                             "b at lr 1.0"]
    assert by_rate["b"] == {1.0: 0.2, 0.1: 0.6, 0.3: 0.4}


def test_choices_text_shows_the_grid_the_choice_the_other_seeds_and_an_edge_rate():
    def run(seed, winner, rates):
        grid = {f"split {s}": {"structure": {"split": s}, "storage_removed": 0.5 + s / 100, "qualifies": s > 1,
                               **({"val": 0.8 + (s == winner) / 10} if s > 1 else {})} for s in (1, 2, 4)}
        return {"seed": seed, "run": {"structure_lr": 0.01, "rates": [0.001, 0.01, 0.1]},
                "data": {"grid": grid, "structure": {"split": winner}, "rates": rates,
                         "chosen_lr": {m: float(max(r, key=r.get)) for m, r in rates.items()}}}
    rates0 = {"hybrid": {"0.001": 0.7, "0.01": 0.9, "0.1": 0.8}, "L1": {"0.001": 0.6, "0.01": 0.7, "0.1": 0.75}}
    text = report.choices_text([run(0, 2, rates0), run(1, 4, rates0), run(2, 2, rates0)], "val accuracy")
    assert "| split 1 | 51.0% | below the storage target: not tried |" in text and "| split 2 | 52.0% | 90.0% |" in text
    assert "(lr 0.01)" in text and "- hybrid: lr 0.001 -> 70.0%, lr 0.01 -> 90.0%, lr 0.1 -> 80.0%" in text
    assert "**Chosen** (seed 0 of the benchmark): split 2; learning rates: hybrid 0.01, L1 0.1." in text
    assert "Seed 1 chose split 4, 10.0 points of val accuracy above seed 0's structure" in text
    assert "Seed 2 chose split 2, the same" in text
    assert "rate chosen for L1 sits at an edge" in text and "(0.1: 75.0%, against 0.01: 70.0%)" in text
    assert "chosen for hybrid" not in text
    assert "Mean val accuracy over the 3 seeds: split 2 86.7%, split 4 83.3%; the mean picks the same" in text
    assert "**the mean would pick split 4, not seed 1's split 2**" in report.choices_text(
        [run(1, 2, rates0), run(0, 4, rates0), run(2, 4, rates0)], "val accuracy")

