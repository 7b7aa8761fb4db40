"""Interactive explorers for the notebooks.

Each explorer keeps its logic in plain methods (``update``) and wires an ipywidgets control to
them, so tests can drive it by setting ``.value`` and read back what it computed, without a
browser. Display one with ``explorer.widget`` (or just leave ``explorer`` last in a cell).
"""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import nn

from . import plots, select
from .data import Dataset
from .measure import layer_macs, sparsity
from .core import eval_mode, example_input
from .surgery import mask_weights, widths
from .train import evaluate


class Explorer:
    """Base: an ``Output`` area redrawn by ``update`` whenever a control's value changes."""

    def __init__(self, controls: list[W.Widget]):
        self.out = W.Output()
        self.figure = None  # the last figure drawn, for inspection and tests
        self.controls = controls
        for c in controls:
            c.observe(lambda change: self.refresh(), names="value")
        self.widget = W.VBox([W.HBox(controls), self.out])

    def refresh(self) -> None:
        with self.out:
            self.out.clear_output(wait=True)
            self.update()
            self.figure = plt.gcf()
            plt.show()
            plt.close(self.figure)

    def update(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _ipython_display_(self):
        from IPython.display import display
        self.refresh()
        display(self.widget)


class SparsityExplorer(Explorer):
    """A sparsity slider: masks the smallest weights (global magnitude pruning, no fine-tuning),
    redraws the weight histogram, and reports the accuracy on ``limit`` validation images.

    After an update, ``self.sparsity`` is the measured fraction of zero weights and
    ``self.accuracy`` the measured accuracy.
    """

    def __init__(self, model: nn.Module, data: Dataset, limit: int = 500, max_sparsity: float = 0.95):
        self.model, self.data, self.limit = model, data, limit
        self.slider = W.FloatSlider(value=0.0, min=0.0, max=max_sparsity, step=0.05,
                                    description="sparsity", continuous_update=False, readout_format=".0%")
        self.accuracy: float | None = None
        self.sparsity: float | None = None
        self.history: dict[float, float] = {}
        super().__init__([self.slider])

    def update(self) -> None:
        ratio = float(self.slider.value)
        masked = mask_weights(self.model, ratio, scope="global")
        self.sparsity = sparsity(masked)["overall"]["sparsity"]
        self.accuracy = evaluate(masked, self.data, "val", limit=self.limit)
        self.history[round(ratio, 4)] = self.accuracy
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
        plots.weight_histogram(masked, ax=a)
        xs = sorted(self.history)
        b.plot(xs, [self.history[x] for x in xs], "o-")
        b.axvline(ratio, color="gray", ls=":")
        b.set_xlabel("sparsity (fraction of weights masked)")
        b.set_ylabel(f"val accuracy ({self.limit} images)")
        b.set_ylim(0, 1)
        b.set_title(f"accuracy {self.accuracy:.1%} at sparsity {self.sparsity:.1%}")
        fig.tight_layout()


class AlphaExplorer(Explorer):
    """GDP's per-layer threshold tau_l = mean(I_l) - alpha * std(I_l): an ``alpha`` slider redraws the
    kept / removed filters per layer and reports the MACs reduction (predicted, no surgery needed).

    After an update, ``self.keep`` holds the selection and ``self.reduction`` its MACs reduction.
    """

    def __init__(self, model: nn.Module, scores, input_size=None, alpha: float = 0.0):
        from .methods import gdp
        self._gdp = gdp
        self.model, self.scores, self.input_size = model, scores, input_size
        self.base = layer_macs(model, input_size)
        self.widths = widths(model)
        self.slider = W.FloatSlider(value=alpha, min=-1.5, max=1.5, step=0.1, description="alpha",
                                    continuous_update=False)
        self.keep: dict | None = None
        self.reduction: float | None = None
        super().__init__([self.slider])

    def update(self) -> None:
        self.keep = self._gdp.keep_alpha(self.scores, float(self.slider.value))
        kept = {n: len(k) for n, k in self.keep.items()}
        self.reduction = select.macs_removed(self.model, self.keep, self.input_size, self.base)
        plots.kept_per_layer(self.widths, kept, title=f"alpha = {self.slider.value:+.1f}: "
                             f"{sum(self.widths.values()) - sum(kept.values())} filters removed, "
                             f"MACs -{self.reduction:.1%}")


class CriterionExplorer(Explorer):
    """Switch between GDP's |g| and |g*w| filter scores and see how each ranks filters compared with
    PFEC's L1 norm: Spearman rank correlation per layer. ``self.correlations`` holds the last values."""

    def __init__(self, model: nn.Module, grads):
        from .methods import baselines, gdp
        self.l1 = baselines.l1_scores(model)
        self.by_criterion = {c: gdp.filter_scores(model, grads, c) for c in ("grad", "taylor")}
        self.toggle = W.ToggleButtons(options=[("|g|", "grad"), ("|g*w|", "taylor")], value="grad",
                                      description="criterion")
        self.correlations: dict[str, float] | None = None
        super().__init__([self.toggle])

    def update(self) -> None:
        scores = self.by_criterion[self.toggle.value]
        self.correlations = {n: select.rank_correlation(scores[n], self.l1[n]) for n in scores}
        label = dict(grad="|g|", taylor="|g*w|")[self.toggle.value]
        ax = plots.bars({plots.short(n): v for n, v in self.correlations.items()}, fmt="{:.2f}",
                        ylabel="Spearman correlation with L1", title=f"{label} ranking vs L1 ranking, per layer",
                        color="tab:purple")
        ax.set_ylim(-1, 1.15)
        ax.tick_params(axis="x", rotation=60)


class ProbesExplorer(Explorer):
    """Hutchinson's estimate of the Hessian diagonal against the exact one on a toy model: a ``probes``
    slider redraws estimate-vs-exact and the relative error as probes accumulate; the empirical
    Fisher's error on the same batch is drawn for comparison.

    ``exact`` is the exact diagonal, ``samples`` a ``(max_probes, n)`` tensor of single Hutchinson
    samples, ``fisher`` the Fisher diagonal (all flattened alike). After an update ``self.error`` is
    the relative error ``|estimate - exact| / |exact|`` at the chosen number of probes.
    """

    def __init__(self, exact, samples, fisher=None, probes: int = 1):
        exact, samples = exact.detach().double().cpu(), samples.detach().double().cpu()    # drawn on the CPU
        self.exact, self.fisher = exact, None if fisher is None else fisher.detach().double().cpu()
        counts = torch.arange(1, len(samples) + 1, dtype=torch.float64).unsqueeze(1)
        self.running = samples.cumsum(dim=0) / counts  # the estimate after 1, 2, ... probes
        self.errors = ((self.running - self.exact).norm(dim=1) / self.exact.norm()).tolist()
        self.slider = W.IntSlider(value=probes, min=1, max=len(samples), description="probes",
                                  continuous_update=False)
        self.error: float | None = None
        super().__init__([self.slider])

    def update(self) -> None:
        k = int(self.slider.value)
        est = self.running[k - 1]
        self.error = self.errors[k - 1]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
        a.scatter(self.exact.numpy(), est.numpy(), s=6, label=f"Hutchinson, {k} probe(s)")
        if self.fisher is not None:
            a.scatter(self.exact.numpy(), self.fisher.numpy(), s=6, marker="x", alpha=0.5, label="empirical Fisher")
        lo, hi = float(self.exact.min()), float(self.exact.max())
        a.plot([lo, hi], [lo, hi], "k--", lw=1, label="exact")
        a.set(xlabel="exact Hessian diagonal h_ii", ylabel="estimate", title="each dot is one weight")
        a.legend(fontsize=8)
        b.loglog(range(1, len(self.errors) + 1), self.errors, label="Hutchinson")
        b.plot([k], [self.error], "o", color="tab:red")
        if self.fisher is not None:
            b.axhline(float((self.fisher - self.exact).norm() / self.exact.norm()), color="tab:orange", ls="--",
                      label="empirical Fisher")
        b.set(xlabel="probes", ylabel="relative error", title=f"relative error {self.error:.2f} at {k} probe(s)")
        b.legend(fontsize=8)
        fig.tight_layout()


class ClusterExplorer(Explorer):
    """Paper 3's clustering, one layer at a time: choose the layer and k; the (mean, variance) scatter is
    redrawn coloured by k-means cluster, with the weak (lowest mean variance) cluster marked for removal.

    After an update ``self.clusters`` is the :class:`~pruning.methods.mean_variance.LayerClusters` shown.
    """

    def __init__(self, model: nn.Module, layers: list[str] | None = None, k: int = 2, seed: int = 0):
        from .methods import mean_variance
        self._statistics = mean_variance
        self.model, self.seed = model, seed
        layers = layers or list(widths(model))
        self.layer = W.Dropdown(options=layers, value=layers[0], description="layer")
        self.k = W.IntSlider(value=k, min=2, max=5, description="k", continuous_update=False)
        self.clusters = None
        super().__init__([self.layer, self.k])

    def update(self) -> None:
        weight = self.model.get_submodule(self.layer.value).weight
        k = min(int(self.k.value), weight.shape[0])
        self.clusters = lc = self._statistics.cluster_filters(weight, k=k, seed=self.seed, name=self.layer.value)
        plots.clusters(lc.stats, lc.labels, lc.weak, title=f"{self.layer.value}, k = {k}: "
                       f"{len(lc.removed)} of {len(lc.labels)} filters in the weak cluster")


class TuckerExplorer(Explorer):
    """A rank slider for the Tucker-2 decomposition of one conv of ``model`` (R_out on the slider, R_in in
    proportion to the input channels). Each update decomposes the layer and reports its parameters, the
    relative reconstruction error, the validation accuracy of the whole model on ``limit`` images with
    that layer replaced (no fine-tuning), and the measured single-thread latency of the layer alone
    (original vs decomposed, interleaved, on the input size the layer sees).

    After an update: ``self.ranks``, ``self.params`` ({"original", "tucker"}), ``self.error``,
    ``self.accuracy``, ``self.latency_ms`` ({"original", "tucker"}); ``self.history`` maps R_out to a
    dict of all of these for every rank tried (a sweep is a loop that sets ``slider.value``).
    """

    def __init__(self, model: nn.Module, layer: str, data: Dataset, rank: int | None = None, limit: int = 500,
                 input_size=None, runs: int = 30):
        from .methods import tucker
        from .measure import latency_many, parameters
        self._tucker, self._latency, self._parameters = tucker, latency_many, parameters
        self.model, self.name, self.data, self.limit, self.runs = model, layer, data, limit, runs
        self.conv = model.get_submodule(layer)
        if not isinstance(self.conv, nn.Conv2d):
            raise ValueError(f"{layer!r} is not a Conv2d of the model")
        seen = {}

        def record(module, args, output):  # returns None, so the output is left alone
            seen["shape"] = tuple(args[0].shape[1:])

        hook = self.conv.register_forward_hook(record)
        try:
            with eval_mode(model), torch.no_grad():   # one forward pass, to learn the layer's input shape
                model(example_input(model, input_size))
        finally:
            hook.remove()
        self.layer_input = seen["shape"]
        o = self.conv.out_channels
        self.slider = W.IntSlider(value=rank or max(1, o // 4), min=1, max=o, description="R_out",
                                  continuous_update=False)
        self.ranks = self.params = self.error = self.accuracy = self.latency_ms = None
        self.history: dict[int, dict] = {}
        super().__init__([self.slider])

    def ranks_for(self, r_out: int) -> tuple[int, int]:
        o, i = self.conv.out_channels, self.conv.in_channels
        return int(r_out), max(1, min(i, round(r_out * i / o)))

    def update(self) -> None:
        t = self._tucker
        self.ranks = self.ranks_for(self.slider.value)
        replaced = t.decompose(self.model, {self.name: self.ranks})
        layer = replaced.get_submodule(self.name)
        self.params = {"original": self._parameters(self.conv), "tucker": self._parameters(layer)}
        original = self.conv.weight.detach()
        self.error = float((layer.full_weight() - original).norm() / original.norm())
        self.accuracy = evaluate(replaced, self.data, "val", limit=self.limit)
        lat = self._latency({"original": self.conv, "tucker": layer}, self.layer_input, threads=1, runs=self.runs)
        self.latency_ms = {k: v["median_ms"] for k, v in lat.items()}
        self.history[self.ranks[0]] = dict(ranks=self.ranks, params=self.params["tucker"], error=self.error,
                                           accuracy=self.accuracy, latency_ms=dict(self.latency_ms))
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.3))
        plots.bars({"original": self.params["original"] / 1e3, "Tucker-2": self.params["tucker"] / 1e3}, ax=a,
                   ylabel="thousand parameters", title=f"{self.name} at ranks {self.ranks}", fmt="{:.1f}")
        xs = sorted(self.history)
        b.plot(xs, [self.history[x]["error"] for x in xs], "o-", label="relative error of W")
        b.plot(xs, [self.history[x]["accuracy"] for x in xs], "s-", label=f"val accuracy ({self.limit} images)")
        b.axvline(self.ranks[0], color="gray", ls=":")
        b.set(xlabel="R_out", ylim=(0, 1), title=f"error {self.error:.2f}, accuracy {self.accuracy:.1%} (no fine-tuning)")
        b.legend(fontsize=8)
        b.grid(alpha=0.3)
        plots.bars({"original": self.latency_ms["original"], "Tucker-2": self.latency_ms["tucker"]}, ax=c,
                   ylabel="ms (median, 1 thread)", fmt="{:.3f}",
                   title=f"this layer alone, input {self.layer_input}")
        fig.tight_layout()


class SearchExplorer(Explorer):
    """Browse a mending search (or two, side by side on one scatter): a ``generation`` slider and a
    ``candidate`` slider. The left panel shows every candidate evaluated up to that generation (MACs against
    validation accuracy; the chosen generation highlighted, the chosen candidate circled); the right panel the
    chosen candidate's widths per layer against the pre-pruned widths.

    After an update ``self.candidate`` is the :class:`~pruning.methods.mending.Candidate` shown.
    """

    def __init__(self, result, prepruned: dict[str, int], full: dict[str, int], budget: int | None = None):
        self.result, self.prepruned, self.full, self.budget = result, prepruned, full, budget
        last = len(result.generations) - 1
        self.generation = W.IntSlider(value=last, min=0, max=last, description="generation", continuous_update=False)
        self.index = W.IntSlider(value=0, min=0, max=len(result.generations[last]) - 1, description="candidate",
                                 continuous_update=False)
        self.candidate = None
        super().__init__([self.generation, self.index])

    def update(self) -> None:
        gens = self.result.generations
        g = int(self.generation.value)
        ranked = sorted(gens[g], key=lambda c: -c.fitness)      # candidate 0 = the generation's best
        self.index.max = len(ranked) - 1
        self.candidate = c = ranked[min(int(self.index.value), len(ranked) - 1)]
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.6))
        earlier = [x for gen in gens[:g] for x in gen]
        if earlier:
            a.scatter([x.macs / 1e6 for x in earlier], [x.fitness for x in earlier], s=12, color="lightgray",
                      label="earlier generations")
        a.scatter([x.macs / 1e6 for x in gens[g]], [x.fitness for x in gens[g]], s=22, color="tab:blue",
                  label=f"generation {g}")
        a.scatter([c.macs / 1e6], [c.fitness], s=120, facecolors="none", edgecolors="tab:red", linewidths=2,
                  label="shown on the right")
        if self.budget is not None:
            a.axvline(self.budget / 1e6, color="black", ls=":", lw=1, label="budget")
        a.set(xlabel="M MACs", ylabel="val accuracy (fast evaluation)",
              title=f"{self.result.method} search: generation {g}, candidate {self.index.value} "
                    f"({c.fitness:.1%}, {c.macs / 1e6:.1f} M MACs)")
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
        plots.kept_fractions(self.full, {"pre-pruned": self.prepruned, "this candidate": c.widths}, ax=b,
                             title="Fraction of each layer kept")
        fig.tight_layout()


class SparsityResultsExplorer(Explorer):
    """Browse runs the notebook already made: a ``sparsity`` slider over the sparsities trained, showing each
    method's test accuracy per seed (dots) and mean (bar), the dense reference, and the mean difference.

    ``results`` maps a method to ``{sparsity: [accuracy of each seed]}``. After an update ``self.means`` holds
    each method's mean at the chosen sparsity and ``self.difference`` the first method's mean minus the second's.
    """

    def __init__(self, results: dict[str, dict[float, list[float]]], dense: float | None = None):
        self.results, self.dense = results, dense
        sparsities = sorted({s for r in results.values() for s in r})
        self.slider = W.SelectionSlider(options=[(f"{s:.0%}", s) for s in sparsities], value=sparsities[0],
                                        description="sparsity", continuous_update=False)
        self.means: dict[str, float] | None = None
        self.difference: float | None = None
        super().__init__([self.slider])

    def update(self) -> None:
        s = self.slider.value
        runs = {m: r[s] for m, r in self.results.items() if s in r}
        self.means = {m: sum(v) / len(v) for m, v in runs.items()}
        names = list(runs)
        self.difference = self.means[names[0]] - self.means[names[1]] if len(names) >= 2 else None
        ax = plots.bars(self.means, fmt="{:.1%}", ylabel="test accuracy",
                        title=f"{s:.0%} of the weights masked" + (f": {names[0]} - {names[1]} = "
                                                                  f"{100 * self.difference:+.1f} pts (mean of seeds)"
                                                                  if self.difference is not None else ""))
        for i, m in enumerate(names):
            ax.scatter([i] * len(runs[m]), runs[m], color="black", zorder=3, s=14, label="one seed" if i == 0 else None)
        if self.dense is not None:
            ax.axhline(self.dense, color="black", ls=":", lw=1, label="dense, trained")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="lower right")


class BudgetExplorer(Explorer):
    """Browse the capstone's results by FLOPs budget: a ``budget`` slider over the budgets that were run,
    showing each method's test accuracy (bars) with its measured latency, and the dense model for reference.

    ``results[budget][method] = {"test": ..., "latency_ms": ...}``. After an update ``self.ranking`` lists the
    methods at the chosen budget from most to least accurate.
    """

    def __init__(self, results: dict[float, dict[str, dict[str, float]]], dense_test: float | None = None,
                 dense_latency_ms: float | None = None):
        self.results, self.dense_test, self.dense_latency_ms = results, dense_test, dense_latency_ms
        budgets = sorted(results)
        self.slider = W.SelectionSlider(options=[(f"-{b:.0%} MACs", b) for b in budgets], value=budgets[0],
                                        description="budget", continuous_update=False)
        self.ranking: list[str] | None = None
        super().__init__([self.slider])

    def update(self) -> None:
        b = self.slider.value
        res = self.results[b]
        self.ranking = sorted(res, key=lambda m: -res[m]["test"])
        ax = plots.bars({m: res[m]["test"] for m in res}, fmt="{:.1%}", ylabel="test accuracy after fine-tuning",
                        title=f"{b:.0%} of the MACs removed: best {self.ranking[0]}")
        for i, m in enumerate(res):
            ax.text(i, 0.03, f"{res[m]['latency_ms']:.2f} ms", ha="center", fontsize=8, color="white", rotation=90)
        if self.dense_test is not None:
            label = "dense" + (f" ({self.dense_latency_ms:.2f} ms)" if self.dense_latency_ms is not None else "")
            ax.axhline(self.dense_test, color="black", ls=":", lw=1, label=label)
            ax.legend(fontsize=8, loc="lower right")
        ax.set_ylim(0, 1)


class DetectionExplorer(Explorer):
    """Browse detections: a ``canvas`` slider over the test canvases and a ``score`` threshold, one panel per
    model (``predictions[model]`` = its outputs on ``data``, as :func:`pruning.detector.predict` returns them).

    After an update ``self.shown[model]`` is the number of boxes drawn for that model (scores >= threshold).
    """

    def __init__(self, data, predictions: dict[str, list[dict]], names=None):
        self.data, self.predictions, self.names = data, predictions, names
        self.canvas = W.IntSlider(value=0, min=0, max=len(data) - 1, description="canvas", continuous_update=False)
        self.score = W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="score >=",
                                   continuous_update=False)
        self.shown: dict[str, int] | None = None
        super().__init__([self.canvas, self.score])

    def update(self) -> None:
        i, t = self.canvas.value, self.score.value
        fig, axes = plt.subplots(1, len(self.predictions), figsize=(3 * len(self.predictions), 3.2), squeeze=False)
        self.shown = {}
        for ax, (model, preds) in zip(axes[0], self.predictions.items()):
            self.shown[model] = int((preds[i]["scores"] >= t).sum())
            plots.detections(self.data.images[i], self.data.targets([i])[0], preds[i], t, ax=ax, names=self.names,
                             title=f"{model}: {self.shown[model]} boxes")
        fig.suptitle(f"canvas {i}: green dashed = truth, red = predicted with score >= {t:.2f}", fontsize=9)
