"""Plots the notebooks share. Each function draws on a matplotlib ``Axes`` (made if not given)
and returns it, so a notebook cell stays one line and a widget can redraw into its own figure."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn


def _ax(ax=None, figsize=(6, 3.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _finish(ax, xlabel: str, ylabel: str, title: str):
    """Axis labels, title, a light grid and a small legend: how the line plots end."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def short(name: str) -> str:
    """A compact label for a module name (``features.10`` -> ``f10``, ``layer1.0.conv1`` -> ``l1.0``)."""
    return (name.replace("features.", "f").replace("layer", "l").replace(".conv1", "")
            .replace("classifier", "fc"))


def weight_histogram(model: nn.Module, ax=None, bins: int = 80, log: bool = True, title: str | None = None):
    """Histogram of all conv and linear weights; exact zeros (pruned weights) are counted apart."""
    ax = _ax(ax)
    ws = torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    nonzero = ws[ws != 0]
    ax.hist(nonzero.detach().cpu().numpy(), bins=bins, color="tab:blue", alpha=0.8, label="kept weights")
    zeros = int((ws == 0).sum())
    ax.set_yscale("log" if log else "linear")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count" + (" (log)" if log else ""))
    ax.set_title(title or f"{zeros:,} of {len(ws):,} weights are zero ({zeros / len(ws):.0%})")
    ax.legend(loc="upper right")
    return ax


def sensitivity(scan: Mapping[str, Sequence[float]], ratios: Sequence[float], baseline: float | None = None,
                ax=None, title: str = "Per-layer sensitivity (one layer pruned, no retraining)"):
    """PFEC Fig. 2 style: accuracy against the fraction of filters removed, one line per layer."""
    ax = _ax(ax, (7, 4))
    cmap = plt.get_cmap("viridis", len(scan))
    for i, (name, accs) in enumerate(scan.items()):
        ax.plot([0, *ratios] if baseline is not None else list(ratios),
                [baseline, *accs] if baseline is not None else list(accs),
                marker="o", ms=3, color=cmap(i), label=short(name))
    ax.set_xlabel("fraction of the layer's filters removed (smallest L1 first)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(ncol=2, fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    return ax


def kept_per_layer(before: Mapping[str, int], after: Mapping[str, int], ax=None,
                   title: str = "Channels kept and removed per layer"):
    """Stacked bars: kept (solid) and removed (light) output channels of every prunable conv."""
    ax = _ax(ax, (8, 3.5))
    names = list(before)
    kept = [after.get(n, before[n]) for n in names]
    removed = [before[n] - k for n, k in zip(names, kept)]
    x = range(len(names))
    ax.bar(x, kept, color="tab:blue", label="kept")
    ax.bar(x, removed, bottom=kept, color="tab:red", alpha=0.35, label="removed")
    ax.set_xticks(list(x), [short(n) for n in names], rotation=60, fontsize=8)
    ax.set_ylabel("output channels")
    ax.set_title(title)
    ax.legend()
    return ax


def bars(values: Mapping[str, float], ax=None, ylabel: str = "", title: str = "", fmt: str = "{:.1f}", color=None):
    """Labelled bar chart of a few named values (e.g. MACs or latency before and after)."""
    ax = _ax(ax, (5, 3.2))
    names = list(values)
    heights = [values[n] for n in names]
    rects = ax.bar(names, heights, color=color or plt.get_cmap("tab10").colors[: len(names)])
    for r, h in zip(rects, heights):
        ax.annotate(fmt.format(h), (r.get_x() + r.get_width() / 2, h), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.margins(y=0.15)
    return ax


def kernel_norms(conv: nn.Conv2d, ax=None, max_channels: int = 32, highlight: tuple[int, int] = (2, 5)):
    """The anatomy of a conv weight ``W[out, in, k, k]`` as a grid: one cell per kernel, coloured
    by its L1 norm. A **row** is a filter (one output channel, what filter pruning removes); a
    **column** is an input channel (what the previous layer's filter pruning removes here).
    A single weight is one number inside one cell (what unstructured pruning removes)."""
    ax = _ax(ax, (6, 5))
    norms = conv.weight.detach().abs().sum(dim=(2, 3))[:max_channels, :max_channels]
    im = ax.imshow(norms.detach().cpu().numpy(), cmap="viridis", aspect="auto")
    f, c = highlight
    ax.add_patch(plt.Rectangle((-0.5, f - 0.5), norms.shape[1], 1, fill=False, ec="red", lw=2))
    ax.add_patch(plt.Rectangle((c - 0.5, -0.5), 1, norms.shape[0], fill=False, ec="orange", lw=2, ls="--"))
    ax.set_xlabel("input channel  (a column = one channel of the previous layer)")
    ax.set_ylabel("filter = output channel  (a row)")
    ax.set_title(f"|W| summed over each {conv.kernel_size[0]}x{conv.kernel_size[1]} kernel\n"
                 f"red: filter {f}   orange: input channel {c}")
    plt.colorbar(im, ax=ax, fraction=0.046)
    return ax


def layer_distributions(values: Mapping[str, torch.Tensor], ax=None, log: bool = True, ylabel: str = "value",
                        title: str = "", max_points: int = 200_000):
    """One box per layer (whiskers at the 1st and 99th percentiles) of, e.g., every weight's
    accumulated gradient. ``log`` plots log10 of the values (zeros are dropped)."""
    ax = _ax(ax, (8, 3.5))
    gen = torch.Generator().manual_seed(0)
    data = []
    for v in values.values():
        v = v.detach().flatten().float()
        if v.numel() > max_points:  # a fixed random subsample keeps the boxes quick to draw
            v = v[torch.randperm(v.numel(), generator=gen)[:max_points]]
        if log:
            v = v[v > 0].log10()
        data.append(v.detach().cpu().numpy())
    ax.boxplot(data, whis=(1, 99), showfliers=False)
    ax.set_xticks(range(1, len(values) + 1), [short(n) for n in values], rotation=60, fontsize=8)
    ax.set_ylabel(f"log10({ylabel})" if log else ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return ax


def scores_with_threshold(scores: torch.Tensor, threshold: float, ax=None, title: str = "",
                          ylabel: str = "filter score"):
    """A layer's filter scores sorted from high to low, the removed ones (below ``threshold``) in red."""
    ax = _ax(ax, (6, 3.2))
    s = scores.detach().float().sort(descending=True).values
    colors = ["tab:red" if v < threshold else "tab:blue" for v in s.tolist()]
    ax.bar(range(len(s)), s.detach().cpu().numpy(), width=1.0, color=colors)
    ax.axhline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel(f"filters, sorted by score ({int((s < threshold).sum())} of {len(s)} below the threshold, red)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper right")
    return ax


def kept_fractions(widths: Mapping[str, int], kept: Mapping[str, Mapping[str, int]], ax=None,
                   title: str = "Fraction of each layer's channels kept"):
    """One line per selection (``{label: {conv: channels kept}}``): where each method puts its cuts."""
    ax = _ax(ax, (8, 3.5))
    names = list(widths)
    for label, k in kept.items():
        ax.plot(range(len(names)), [k.get(n, widths[n]) / widths[n] for n in names], "o-", ms=4, label=label)
    ax.set_xticks(range(len(names)), [short(n) for n in names], rotation=60, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction kept")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def allocation_cuts(run: Mapping, budget: float, widths: Mapping[str, int], criterion: str = "GDP", ax=None):
    """Where each allocation of ``benchmarks/criterion_allocation.py`` cuts one criterion's scores at one budget (a
    fraction of the MACs), from one seed's results file (``report.load_runs("criterion_allocation")``)."""
    chosen = run["data"][f"{budget:g}"]
    kept = {k.split(" | ")[1]: v["widths"] for k, v in chosen.items() if k.startswith(f"{criterion} | ")}
    return kept_fractions(widths, kept, ax=ax, title=f"{criterion}'s scores at -{budget:.0%} MACs: the filters each "
                                                     f"allocation keeps (benchmark, seed {run['seed']})")


def macs_per_layer(before: Mapping[str, int], after: Mapping[str, int], ax=None, title: str = ""):
    """Grouped bars: every layer's MACs (millions) before and after pruning."""
    ax = _ax(ax, (8, 3.5))
    names = list(before)
    x = torch.arange(len(names)).float()
    ax.bar((x - 0.2).numpy(), [before[n] / 1e6 for n in names], width=0.4, label="before", color="tab:gray")
    ax.bar((x + 0.2).numpy(), [after.get(n, 0) / 1e6 for n in names], width=0.4, label="after", color="tab:blue")
    ax.set_xticks(x.numpy(), [short(n) for n in names], rotation=60, fontsize=8)
    ax.set_ylabel("M MACs")
    ax.set_title(title or f"MACs per layer: {sum(before.values()) / 1e6:.1f} M -> {sum(after.values()) / 1e6:.1f} M")
    ax.legend()
    return ax


def line_chart(ys: Mapping[str, Sequence[float]], xs: Sequence[float] | None = None, ax=None, xlabel: str = "",
           ylabel: str = "", title: str = "", hline: tuple[float, str] | None = None):
    """One line per label (a fine-tuning curve, an accuracy-vs-sparsity sweep); ``hline`` = (y, label)
    draws a reference such as the dense model's accuracy."""
    ax = _ax(ax, (6, 3.5))
    for label, y in ys.items():
        ax.plot(list(xs) if xs is not None else range(len(y)), list(y), "o-", ms=4, label=label)
    if hline is not None:
        ax.axhline(hline[0], color="black", ls=":", lw=1, label=hline[1])
    return _finish(ax, xlabel, ylabel, title)


def clusters(stats: torch.Tensor, labels, weak: int, ax=None, title: str = ""):
    """Paper 3's picture: every filter of a layer at (mean, variance) of its weights, coloured by its
    k-means cluster; the weak cluster (removed) drawn as red crosses. Each point is labelled by its index."""
    ax = _ax(ax, (5, 4))
    labels = torch.as_tensor(labels)
    others = [c for c in sorted(set(labels.tolist())) if c != weak]
    cmap = plt.get_cmap("tab10")
    for i, c in enumerate(others):
        sel = labels == c
        ax.scatter(stats[sel, 0].detach().cpu().numpy(), stats[sel, 1].detach().cpu().numpy(), s=30, color=cmap(i), label=f"cluster {c} (kept)")
    sel = labels == weak
    ax.scatter(stats[sel, 0].detach().cpu().numpy(), stats[sel, 1].detach().cpu().numpy(), s=40, marker="x", color="tab:red",
               label=f"cluster {weak}: weak, removed")
    if len(labels) <= 40:
        for j, (mu, var) in enumerate(stats.tolist()):
            ax.annotate(str(j), (mu, var), fontsize=7, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("mean of the filter's weights")
    ax.set_ylabel("variance of the filter's weights")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def filters(weight: torch.Tensor, removed: Sequence[int] = (), ncols: int = 8, title: str = "", size: float = 1.3):
    """Each filter of a conv as an image (its input-channel kernels side by side, one colour scale for
    all); removed filters are framed in red. Returns the figure."""
    w = weight.detach().float().cpu()
    n, c_in, kh, kw = w.shape
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * max(1.0, c_in / 3), size * nrows + 0.4),
                             squeeze=False)
    lim = float(w.abs().max())
    for j, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if j >= n:
            ax.axis("off")
            continue
        tiles = torch.cat([torch.cat([w[j, i], torch.full((kh, 1), float("nan"))], dim=1) for i in range(c_in)], dim=1)
        ax.imshow(tiles[:, :-1].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        gone = j in set(removed)
        ax.set_title(f"#{j}" + (" removed" if gone else ""), fontsize=8, color="tab:red" if gone else "black")
        for spine in ax.spines.values():
            spine.set_edgecolor("tab:red" if gone else "lightgray")
            spine.set_linewidth(2.5 if gone else 0.5)
    fig.suptitle(title or f"{n} filters ({c_in} input channel(s) each, side by side); red frame = removed")
    fig.tight_layout()
    return fig


def singular_values(weight: torch.Tensor, ranks: Sequence[int] | None = None, ax=None, title: str = ""):
    """The singular values of a conv weight's two channel unfoldings (mode 0: output channels, mode 1:
    input channels), normalised by the largest, with the chosen Tucker-2 ranks marked."""
    ax = _ax(ax, (6, 3.5))
    w = weight.detach().double()
    for mode, label, color in ((0, "mode 0 (output channels)", "tab:blue"), (1, "mode 1 (input channels)", "tab:orange")):
        s = torch.linalg.svdvals(w.movedim(mode, 0).flatten(1))
        ax.semilogy(range(1, len(s) + 1), (s / s[0]).detach().cpu().numpy(), color=color, label=label)
        if ranks is not None:
            ax.axvline(ranks[mode], color=color, ls="--", lw=1)
    ax.set_xlabel("index (dashed: the rank kept)")
    ax.set_ylabel("singular value / largest")
    ax.set_title(title or "Spectrum of the two unfoldings")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def tucker_factors(weight: torch.Tensor, core: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                   title: str = "", show: tuple[int, int] = (48, 144)):
    """Eq. (4) of notebook 03 as pictures: the kernel W (unfolded: outputs x inputs*k*k), the factor U
    (outputs x R_out), the core G (unfolded: R_out x R_in*k*k), the factor V (inputs x R_in), and the
    reconstruction. Only the top-left ``show = (rows, columns)`` of each matrix is drawn, so that single
    weights stay visible on a large layer. The relative error of the reconstruction is appended to ``title``.
    Returns the figure."""
    from .methods.tucker import reconstruct

    weight, core, u, v = (t.detach().cpu() for t in (weight, core, u, v))      # drawn on the CPU
    rec = reconstruct(core.double(), u.double(), v.double())
    panels = [("W (O x I k k)", weight.flatten(1)), ("U (O x R_out)", u), ("core G (R_out x R_in k k)", core.flatten(1)),
              ("V (I x R_in)", v), ("reconstruction", rec.flatten(1))]
    fig, axes = plt.subplots(1, 5, figsize=(14, 3.6), gridspec_kw={"width_ratios": [3, 1.2, 3, 1.2, 3]})
    rows, cols = show
    for ax, (label, m) in zip(axes, panels):
        m = m.detach().float()
        part = m[:rows, :cols]
        lim = float(part.abs().max())
        ax.imshow(part.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        shown = "" if part.shape == m.shape else f", top-left {tuple(part.shape)} shown"
        ax.set_title(f"{label}\n{tuple(m.shape)}{shown}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    err = float((rec - weight.detach().double()).norm() / weight.detach().double().norm())
    fig.suptitle(f"{title or 'W ~ G x_0 U x_1 V'}: relative error {err:.2f}")
    fig.tight_layout()
    return fig


def stages(names: Sequence[str], notes: Sequence[str] = (), highlight: Sequence[int] = (), ax=None, title: str = ""):
    """A pipeline as boxes and arrows (e.g. train -> pre-prune -> mend -> fine-tune); the stages whose index is in
    ``highlight`` are drawn in colour, and ``notes`` (one per stage) are written under the boxes."""
    ax = _ax(ax, (2.6 * len(names), 1.9))
    for i, name in enumerate(names):
        on = i in set(highlight)
        ax.add_patch(plt.Rectangle((i * 2.6, 0), 2.0, 1.0, fc="tab:orange" if on else "whitesmoke", ec="black"))
        ax.text(i * 2.6 + 1.0, 0.5, name, ha="center", va="center", fontsize=10, weight="bold" if on else None)
        if i < len(notes):
            ax.text(i * 2.6 + 1.0, -0.25, notes[i], ha="center", va="top", fontsize=8, wrap=True)
        if i + 1 < len(names):
            ax.annotate("", xy=(i * 2.6 + 2.55, 0.5), xytext=(i * 2.6 + 2.05, 0.5), arrowprops=dict(arrowstyle="->"))
    ax.set_xlim(-0.2, 2.6 * len(names) - 0.4)
    ax.set_ylim(-1.2, 1.2)
    ax.axis("off")
    ax.set_title(title)
    return ax


def width_grid(grid: Mapping, budget: int, path: Sequence = (), ax=None, title: str = ""):
    """Validation accuracy of every (width 1, width 2) structure of a two-layer model (``mending.grid``), with
    the structures over the MACs ``budget`` hatched out, the ``path`` of a greedy pruner drawn on top, and the
    best structure within budget starred."""
    ax = _ax(ax, (6.5, 3.8))
    w1 = max(k[0] for k in grid)
    w2 = max(k[1] for k in grid)
    acc = torch.full((w1, w2), float("nan"))
    over = torch.zeros(w1, w2, dtype=torch.bool)
    for (a, b), c in grid.items():
        acc[a - 1, b - 1] = c.fitness
        over[a - 1, b - 1] = c.macs > budget
    im = ax.imshow(acc.numpy(), origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto",
                   extent=(0.5, w2 + 0.5, 0.5, w1 + 0.5))
    ys, xs = torch.nonzero(over, as_tuple=True)
    ax.scatter((xs + 1).numpy(), (ys + 1).numpy(), marker="x", s=14, color="black", alpha=0.45, label="over budget")
    if path:
        names = list(path[0].widths)
        ax.plot([c.widths[names[1]] for c in path], [c.widths[names[0]] for c in path], "-", color="tab:red",
                lw=2, label="greedy path")
        ax.plot([path[-1].widths[names[1]]], [path[-1].widths[names[0]]], "o", color="tab:red", ms=9,
                label=f"greedy end: {path[-1].fitness:.1%}")
    best = max((c for c in grid.values() if c.macs <= budget), key=lambda c: c.fitness)
    n1, n2 = list(best.widths)
    ax.plot([best.widths[n2]], [best.widths[n1]], "*", color="gold", ms=16, mec="black",
            label=f"best within budget: {best.fitness:.1%}")
    ax.set_xlabel(f"{n2} width")
    ax.set_ylabel(f"{n1} width")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    plt.colorbar(im, ax=ax, fraction=0.046, label="val accuracy")
    return ax


def mask_scores(layer, ax=None, bins: int = 60, title: str = ""):
    """Histogram of one supermask layer's ranking values (``|scores|`` for edge-popup, the relaxed variable
    for SBP), kept weights (in the mask) and masked ones in two colours."""
    ax = _ax(ax, (6, 3.2))
    with torch.no_grad():
        r = layer.ranking().detach().flatten()
        m = layer.mask().detach().flatten().bool()
    lo, hi = float(r.min()), float(r.max())
    edges = torch.linspace(lo, hi if hi > lo else lo + 1, bins + 1).numpy()
    ax.hist(r[m].detach().cpu().numpy(), bins=edges, color="tab:blue", alpha=0.8, label=f"kept ({int(m.sum()):,})")
    ax.hist(r[~m].detach().cpu().numpy(), bins=edges, color="tab:red", alpha=0.5, label=f"masked ({int((~m).sum()):,})")
    ax.set_xlabel("ranking value")
    ax.set_ylabel("weights")
    ax.set_title(title or f"{layer.method}: ranking values of one layer")
    ax.legend(fontsize=8)
    return ax


def ranking_bars(values: torch.Tensor, mask: torch.Tensor, before: torch.Tensor | None = None, ax=None,
                 title: str = "", ylabel: str = "ranking value"):
    """A small vector as bars, blue where ``mask`` keeps the entry and grey where it drops it; ``before``
    (optional) marks each entry's previous value with a black tick, to show one update step."""
    ax = _ax(ax, (5, 3))
    v, m = values.detach().flatten(), mask.detach().flatten().bool()
    ax.bar(range(len(v)), v.detach().cpu().numpy(), color=["tab:blue" if k else "tab:gray" for k in m.tolist()])
    if before is not None:
        ax.scatter(range(len(v)), before.detach().flatten().cpu().numpy(), marker="_", s=300, color="black", zorder=3,
                   label="before the step")
        ax.legend(fontsize=8)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(range(len(v)))
    ax.set_xlabel("weight index")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"kept (blue): {int(m.sum())} of {len(v)}")
    return ax


def layer_bars(series: Mapping[str, Mapping[str, float]], ax=None, ylabel: str = "", title: str = "",
               hline: tuple[float, str] | None = None):
    """Grouped bars, one group per layer and one bar per series (``{label: {layer: value}}``); ``hline`` =
    (y, label) draws a reference such as what chance alone would give."""
    ax = _ax(ax, (7, 3.2))
    names = list(next(iter(series.values())))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        x = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(x, [values[n] for n in names], width=width, label=label)
    if hline is not None:
        ax.axhline(hline[0], color="black", ls=":", lw=1, label=hline[1])
    ax.set_xticks(range(len(names)), [short(n) for n in names], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def tradeoff(series: Mapping[str, Sequence[tuple[float, float]]], ax=None, dense: tuple[float, float] | None = None,
             front: Sequence[tuple[float, float]] = (), xlabel: str = "", ylabel: str = "accuracy", title: str = ""):
    """Accuracy against a cost, one line of points per method (``{method: [(cost, accuracy), ...]}``, e.g. one
    point per budget); ``dense`` is the unpruned model (a star) and ``front`` the Pareto-optimal points
    (circled)."""
    ax = _ax(ax, (6.5, 4))
    for label, pts in series.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=5, label=label)
    if front:
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=160, facecolors="none", edgecolors="black",
                   zorder=3, label="Pareto front")
    if dense is not None:
        ax.scatter([dense[0]], [dense[1]], marker="*", s=200, color="black", zorder=3, label="dense")
    return _finish(ax, xlabel, ylabel, title)


def detections(image: torch.Tensor, target: Mapping[str, torch.Tensor] | None = None,
               prediction: Mapping[str, torch.Tensor] | None = None, score_threshold: float = 0.5, ax=None,
               title: str = "", names: Sequence[str] | None = None):
    """A detection canvas with its true boxes (green, dashed) and the predicted boxes scoring at least
    ``score_threshold`` (red, with class and score). ``names[label]`` is a label's printed name."""
    from matplotlib.patches import Rectangle
    ax = _ax(ax, (3, 3))
    ax.imshow(image.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=255)
    name = (lambda k: names[k]) if names is not None else str
    if target is not None:
        for (x1, y1, x2, y2), k in zip(target["boxes"].tolist(), target["labels"].tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime", ls="--", lw=1))
    if prediction is not None:
        keep = prediction["scores"] >= score_threshold
        for (x1, y1, x2, y2), k, s in zip(prediction["boxes"][keep].tolist(), prediction["labels"][keep].tolist(),
                                          prediction["scores"][keep].tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="red", lw=1.2))
            inside = y1 < 8   # a box at the top edge: label inside it, not over the title
            ax.text(x1 + 0.5, y1 + 1 if inside else y1 - 1, f"{name(k)} {s:.2f}", color="yellow", fontsize=7,
                    va="top" if inside else "bottom", clip_on=True,
                    bbox=dict(facecolor="black", alpha=0.6, lw=0, pad=0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return ax


def precision_recall(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], ax=None, title: str = ""):
    """Precision against recall, one line per entry of ``curves`` (``{label: (recall, precision)}``)."""
    ax = _ax(ax, (4.5, 3.5))
    for label, (recall, precision) in curves.items():
        ax.plot(recall, precision, label=label)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    return _finish(ax, "recall", "precision", title)


def reference(rows: Sequence[Mapping], runs: Sequence[Mapping], live_seed: int | None = None, ax=None,
              title: str = "This run against the reference runs"):
    """The live run beside the reference distribution: one line per key number (``rows`` as made by
    ``report.number`` / ``paired`` / ``difference``), the reference seeds as grey dots, this run as a red star.
    Comparisons are drawn as A - B in points with the zero line: a difference whose dots straddle zero is not
    resolved. ``runs`` are the reference runs' records (``report.load_runs``); a run with ``live_seed`` is left out."""
    from . import report  # numbers are shown in the units the report uses
    rows = list(rows)
    ax = ax or plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))[1]
    shown_ref = False
    for i, row in enumerate(rows):
        scale = 100.0 if row["kind"] != "number" and row["unit"] == "%" else report.UNITS[row["unit"]]
        ref = [report.row_value(r) * scale for run in runs if run["seed"] != live_seed
               for r in run["rows"] if r["quantity"] == row["quantity"]]
        ax.scatter(ref, [i] * len(ref), color="0.55", s=30, zorder=2,
                   label="reference seeds" if ref and not shown_ref else None)
        shown_ref = shown_ref or bool(ref)
        ax.scatter([report.row_value(row) * scale], [i], marker="*", color="tab:red", s=140, zorder=3,
                   label="this run" if i == 0 else None)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([(r["quantity"] if r["kind"] == "number" else f"{r['a']} - {r['b']}")[:60] for r in rows],
                       fontsize=8)
    if any(r["kind"] != "number" for r in rows):
        ax.axvline(0, color="k", lw=0.8)
    ax.invert_yaxis()
    ax.set_title(title if shown_ref else title + " (no reference runs yet)")
    ax.set_xlabel("value (comparisons: difference in points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax


def candidates(runs: Sequence[Mapping], rate: str, x: str = "search", y: str = "test_finetuned", ax=None,
               xlabel: str = "", ylabel: str = "", title: str = ""):
    """The mending benchmark's candidate structures (``benchmarks/mending_fitness.py``) at one target (``rate``,
    e.g. ``"0.70"``): score ``x`` against score ``y`` in percent, one colour per seed, the search's winner as a star
    and the pre-pruned structure as a square; candidates without a ``y`` (not fine-tuned) are left out."""
    ax = _ax(ax, (5, 3.6))
    for i, run in enumerate(runs):
        color = f"C{i}"
        pts = [c for c in run["data"][rate]["candidates"] if x in c and y in c]
        ax.scatter([100 * c[x] for c in pts], [100 * c[y] for c in pts], s=18, color=color, alpha=0.7,
                   label=f"seed {run['seed']}")
        for flag, marker in (("winner", "*"), ("pre_pruned", "s")):
            for c in (c for c in pts if c[flag]):
                ax.scatter([100 * c[x]], [100 * c[y]], marker=marker, s=110 if marker == "*" else 50, color=color,
                           edgecolor="black", zorder=3)
    ax.scatter([], [], marker="*", s=110, color="white", edgecolor="black", label="search's winner")
    ax.scatter([], [], marker="s", s=50, color="white", edgecolor="black", label="pre-pruned")
    return _finish(ax, xlabel, ylabel, title)


def speed_factors(factors: Mapping[str, Mapping[str, tuple[float, float]]], ncols: int = 3):
    """One panel per factor of speed: for each setting, measured speed-up divided by the FLOPs-predicted one
    (``{factor: {setting: (measured, predicted)}}``), with the 1.0 line (running as much faster as the FLOPs say)
    and each bar labelled "measured of predicted"."""
    n = len(factors)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.0 * nrows), sharey=True, squeeze=False)
    top = max(m / p for f in factors.values() for m, p in f.values())
    for ax, (factor, settings) in zip(axes.flat, factors.items()):
        names = list(settings)
        ratios = [settings[k][0] / settings[k][1] for k in names]
        rects = ax.bar(names, ratios, color=plt.get_cmap("tab10").colors[: len(names)])
        for r, k in zip(rects, names):
            m, p = settings[k]
            ax.annotate(f"{m:.2f}x of {p:.2f}x", (r.get_x() + r.get_width() / 2, r.get_height()), ha="center",
                        va="bottom", fontsize=8)
        ax.axhline(1.0, color="black", ls="--", lw=1)
        ax.set_title(factor, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(0, max(1.15, 1.15 * top))
    for ax in axes[:, 0]:
        ax.set_ylabel("measured / predicted speed-up")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def channel_groups(model: nn.Module, groups, ax=None, title: str = "", max_groups: int = 60):
    """The channel groups as a picture: one row per group (``pruning.core.ChannelGroup``), one column per conv or
    linear layer in the model's order. In a row, a filled circle is the conv whose scores choose the channels, a
    square a conv coupled to it by a residual sum (it loses the same output channels), a diamond a depthwise conv
    that follows them, and a triangle a layer whose *inputs* shrink. A row with many squares is a residual stream."""
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    col = {n: i for i, n in enumerate(layers)}
    shown = list(groups)[:max_groups]
    ax = _ax(ax, (max(7.0, 0.16 * len(layers) + 2), max(2.5, 0.2 * len(shown) + 1.2)))
    kinds = (("conv", "o", "tab:red", "chooses the channels"), ("coupled", "s", "tab:orange", "coupled by a residual sum"),
             ("depthwise", "D", "tab:green", "depthwise, follows them"), ("consumers", "^", "tab:blue", "inputs shrink"))
    for kind, marker, color, label in kinds:
        xs, ys = [], []
        for row, g in enumerate(shown):
            names = (g.conv,) if kind == "conv" else getattr(g, kind)
            xs += [col[n] for n in names if n in col]
            ys += [row] * sum(n in col for n in names)
        ax.scatter(xs, ys, marker=marker, color=color, s=22, label=label, zorder=3)
    for row, g in enumerate(shown):
        xs = [col[n] for n in g.members if n in col]
        ax.plot([min(xs), max(xs)], [row, row], color="lightgray", lw=1, zorder=1)
    ax.set_yticks(range(len(shown)), [f"{g.conv} ({model.get_submodule(g.conv).out_channels})" for g in shown],
                  fontsize=6)
    ax.set_xticks(range(len(layers)), [short(n) for n in layers], rotation=90, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("conv and linear layers, in the model's order")
    ax.set_title(title or f"{len(list(groups))} channel groups found by tracing")
    ax.grid(alpha=0.2)
    ax.legend(fontsize=7, loc="upper right")
    return ax
