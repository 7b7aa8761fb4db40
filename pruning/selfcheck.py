"""Self-check functions for the notebooks' exercises.

Each ``check_*`` compares a student's answer with a value the package measures itself (never a
stored answer), prints a short verdict with a hint when wrong, and returns ``True`` / ``False``.
"""

from __future__ import annotations

from torch import nn

from .measure import macs


def _verdict(ok: bool, right: str, hint: str) -> bool:
    print(("Correct. " + right) if ok else ("Not yet. " + hint[:1].upper() + hint[1:]))
    return ok


def _missing(answer) -> bool:
    if answer is None:
        print("No answer yet: replace None with your number and run the cell again.")
        return True
    return False


def conv_macs(c_in: int, c_out: int, kernel: int, size: int, stride: int = 1, padding: int | None = None) -> int:
    """MACs of one square conv on a ``size`` x ``size`` input, measured with the FLOPs counter."""
    padding = kernel // 2 if padding is None else padding
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
    return macs(conv, (c_in, size, size))


def check_conv_macs(answer: int, c_in: int, c_out: int, kernel: int, size: int, stride: int = 1) -> bool:
    """Exercise: the MACs of a conv layer (``same`` padding) computed by hand."""
    if _missing(answer):
        return False
    truth = conv_macs(c_in, c_out, kernel, size, stride)
    out = (size + 2 * (kernel // 2) - kernel) // stride + 1
    return _verdict(
        int(answer) == truth,
        f"{c_out} x {c_in} x {kernel}x{kernel} x {out}x{out} = {truth:,} MACs.",
        f"you gave {int(answer):,}. Count one multiply-accumulate per output value per input value "
        f"it reads: (output channels) x (input channels) x (kernel area) x (output height x width).",
    )


def check_pruned_macs(answer: int, c_in: int, c_out: int, kernel: int, size: int, removed: int,
                      next_c_out: int) -> bool:
    """Exercise: MACs saved in a conv *and the conv after it* when ``removed`` filters go."""
    if _missing(answer):
        return False
    before = conv_macs(c_in, c_out, kernel, size) + conv_macs(c_out, next_c_out, kernel, size)
    after = conv_macs(c_in, c_out - removed, kernel, size) + conv_macs(c_out - removed, next_c_out, kernel, size)
    return _verdict(
        int(answer) == before - after,
        f"removing {removed} filters saves {before - after:,} MACs: in the layer itself and in the next "
        f"layer, which no longer reads those {removed} channels.",
        f"you gave {int(answer):,}. Removing a filter removes an output channel here *and* an input "
        f"channel of the next conv: count the savings in both layers.",
    )


def _missing_function(result) -> bool:
    if result is None:
        print("No answer yet: your function returns None. Fill in its body and run the cell again.")
        return True
    return False


class _Raised(Exception):
    """The learner's function raised: reported as a hint, never as a traceback."""


def _call(fn, *args, case: str = ""):
    """``fn(*args)``; an exception inside the learner's code becomes a one-line report naming the case."""
    try:
        return fn(*args)
    except Exception as exc:  # the learner's code, whatever it raises
        print(f"Not yet. Your function raised {type(exc).__name__}: {exc}" + (f" (on {case})." if case else "."))
        raise _Raised from None


def _guarded(check):
    """Decorator: a check whose learner function raised returns False after its one-line report."""
    import functools

    @functools.wraps(check)
    def run(*args, **kw):
        try:
            return check(*args, **kw)
        except _Raised:
            return False
    return run


def _surgery_cases(seed: int = 0):
    """Random conv -> BN -> conv blocks with a ``keep`` list each, edge cases first: keep every channel, keep one."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 6, 4, 3, True, "all"), (3, 6, 4, 3, False, "one"), (1, 8, 5, 1, True, "some"),
              (3, 16, 2, 3, False, "some"), (4, 5, 7, 3, True, "some")]
    for c_in, mid, c_out, k, bias, which in shapes:
        conv1 = nn.Conv2d(c_in, mid, k, padding=k // 2, bias=bias)
        bn = nn.BatchNorm2d(mid)
        conv2 = nn.Conv2d(mid, c_out, k, padding=k // 2, bias=bias)
        with torch.no_grad():
            for t in (conv1.weight, conv2.weight, bn.weight, bn.bias, bn.running_mean):
                t.copy_(torch.randn(t.shape, generator=gen))
            bn.running_var.copy_(torch.rand(mid, generator=gen) + 0.5)
        if which == "all":
            keep = list(range(mid))
        elif which == "one":
            keep = [int(torch.randint(mid, (1,), generator=gen))]
        else:
            keep = sorted(torch.randperm(mid, generator=gen)[: max(1, mid // 2)].tolist())
        yield conv1.eval(), bn.eval(), conv2.eval(), keep, f"a block {c_in} -> {mid} -> {c_out} channels, " \
            f"{k}x{k} kernels, bias={bias}, keep={keep}"


@_guarded
def check_layer_threshold(fn) -> bool:
    """Exercise (GDP eq. 3a): ``fn(scores, alpha)`` returns the indices of the filters a layer keeps,
    those with score >= mean - alpha * std. Compared with :func:`pruning.methods.gdp.keep_alpha` on
    random layers of random sizes."""
    import torch

    from .methods import gdp

    gen = torch.Generator().manual_seed(1)
    cases = [(torch.tensor([1.0, 2.0, 3.0, 10.0]), 0.75)]  # population and sample std disagree here
    for alpha in (-0.5, 0.0, 0.5, 1.0, 2.0):
        cases.append((torch.rand(int(torch.randint(4, 40, (1,), generator=gen)), generator=gen) ** 2, alpha))
    for trial, (scores, alpha) in enumerate(cases):
        got = _call(fn, scores.clone(), alpha, case=f"{len(scores)} filters, alpha = {alpha}")
        if trial == 0 and _missing_function(got):
            return False
        want = gdp.keep_alpha({"layer": scores}, alpha)["layer"]
        got = sorted(int(i) for i in (got.tolist() if hasattr(got, "tolist") else got))
        if got != want:
            return _verdict(False, "", f"for alpha = {alpha} and {len(scores)} filters you kept {len(got)}, the rule keeps "
                            f"{len(want)}. Use the population std (torch.std(..., unbiased=False)), keep scores >= the "
                            f"threshold, and return sorted indices.")
    return _verdict(True, "your threshold matches eq. (3a) on a layer worked by hand and five random ones.", "")


@_guarded
def check_taylor_scores(fn, model: nn.Module, grads) -> bool:
    """Exercise (GDP eq. 2'): ``fn(weight, accumulated_grad)`` returns one |g*w| score per output filter
    (the mean over the filter's weights). Compared with :func:`pruning.methods.gdp.filter_scores`."""
    import torch

    from .methods import gdp
    from .surgery import channel_groups

    modules = dict(model.named_modules())
    want = gdp.filter_scores(model, grads, "taylor")
    for g in channel_groups(model):
        got = _call(fn, modules[g.conv].weight.detach(), grads[g.conv], case=f"layer {g.conv}")
        if _missing_function(got):
            return False
        got = torch.as_tensor(got).flatten().cpu()
        if got.shape != want[g.conv].shape or not torch.allclose(got.float(), want[g.conv].float().cpu(), rtol=1e-4, atol=1e-12):
            return _verdict(False, "", f"layer {g.conv}: expected {tuple(want[g.conv].shape)} scores matching "
                            f"mean over (in, kh, kw) of |w| * A; check the shape and which dimensions you average.")
    return _verdict(True, f"your |g*w| scores match eq. (2') on all {len(want)} layers.", "")


def check_sum_rule(answer, model: nn.Module, hdiag, layer: str, channel: int) -> bool:
    """Exercise (sensitivity eq. 4): the sensitivity of one output channel, computed by the student from
    the Hessian diagonal and the weights, against :func:`pruning.methods.sensitivity.channel_sensitivity`."""
    if _missing(answer):
        return False
    from .methods import sensitivity

    truth = float(sensitivity.channel_sensitivity(model, {layer: hdiag[layer]})[layer][channel])
    ok = abs(float(answer) - truth) <= 1e-6 * max(1.0, abs(truth)) + 1e-12
    return _verdict(ok, f"S = 1/2 sum h w^2 over the channel's weights = {truth:.4g}.",
                    f"you gave {float(answer):.4g}. Take the channel's slice of the weight and of h "
                    f"(index [channel] on the first dimension), then 0.5 * (h * w**2).sum().")


@_guarded
def check_hutchinson(fn, size: int = 8, probes: int = 2000) -> bool:
    """Exercise (sensitivity eq. 5): ``fn(hvp, n, probes, generator)`` returns Hutchinson's estimate of the
    diagonal of an n x n matrix that is only available through ``hvp(v) = H v``. Checked against the
    exact diagonal of a random symmetric matrix, within 5 standard errors of the estimator."""
    import torch

    gen = torch.Generator().manual_seed(7)
    a = torch.randn(size, size, generator=gen, dtype=torch.float64)
    h = (a + a.T) / 2
    est = _call(fn, lambda v: h @ v.to(h.dtype), size, probes, torch.Generator().manual_seed(0),
                case=f"a random symmetric {size} x {size} matrix")
    if _missing_function(est):
        return False
    est = torch.as_tensor(est, dtype=torch.float64).flatten()
    if est.shape != (size,):
        return _verdict(False, "", f"return one number per diagonal entry (shape ({size},)), got {tuple(est.shape)}.")
    se = (((h ** 2).sum(dim=1) - h.diagonal() ** 2) / probes).sqrt()
    ok = bool(torch.all((est - h.diagonal()).abs() <= 5 * se + 1e-9))
    return _verdict(ok, f"your estimate is within 5 standard errors of the exact diagonal ({probes} probes).",
                    "Hutchinson's identity is E[z * (H z)] = diag(H) for a probe z whose entries are independent, "
                    "mean 0 and of square 1. Check which distribution your probes come from, and that each probe's "
                    "H z is multiplied entry by entry by that same z before averaging.")


def check_tucker_params(answer, conv: nn.Module, ranks) -> bool:
    """Exercise (Tucker eq. 6): the parameters of ``conv``'s Tucker-2 replacement at ``ranks``, by hand.
    Checked against the parameters of the replacement actually built."""
    from .measure import parameters
    from .methods.tucker import decompose_conv

    if _missing(answer):
        return False
    truth = parameters(decompose_conv(conv, ranks))
    o, i = conv.out_channels, conv.in_channels
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return _verdict(int(answer) == truth,
                    f"{i}*{ranks[1]} + {ranks[1]}*{ranks[0]}*{k} + {ranks[0]}*{o}"
                    + (f" + {o} (bias)" if conv.bias is not None else "") + f" = {truth:,} parameters, "
                    f"against {parameters(conv):,} in the original ({truth / parameters(conv):.0%}).",
                    f"you gave {int(answer):,}. Add the three convolutions: 1x1 from {i} inputs to R_in, "
                    f"k x k from R_in to R_out ({k} weights per pair), 1x1 from R_out to {o} outputs"
                    + (", plus the bias." if conv.bias is not None else "."))


@_guarded
def check_hosvd(fn, seed: int = 0) -> bool:
    """Exercise (Tucker eq. 4): ``fn(weight, (r_out, r_in))`` returns ``(core, U, V)`` by truncated HOSVD.
    Checked on a random kernel: the shapes, orthonormal factors, an exact reconstruction at full rank, and
    an error at low rank within 10% of tensorly's ``partial_tucker`` (which refines HOSVD by iteration)."""
    import torch

    from .methods.tucker import reconstruct, tucker2

    w = torch.randn(12, 8, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    result = _call(fn, w, (5, 4), case="a 12 x 8 x 3 x 3 kernel at ranks (5, 4)")
    if _missing_function(result):
        return False
    try:
        core, u, v = (torch.as_tensor(t, dtype=torch.float64) for t in result)
    except (TypeError, ValueError):
        return _verdict(False, "", "return three tensors: (core, U, V).")
    if core.shape != (5, 4, 3, 3) or u.shape != (12, 5) or v.shape != (8, 4):
        return _verdict(False, "", f"expected core (5, 4, 3, 3), U (12, 5), V (8, 4); got {tuple(core.shape)}, "
                        f"{tuple(u.shape)}, {tuple(v.shape)}. U holds left singular vectors of the mode-0 unfolding.")
    if not (torch.allclose(u.T @ u, torch.eye(5, dtype=u.dtype), atol=1e-6)
            and torch.allclose(v.T @ v, torch.eye(4, dtype=v.dtype), atol=1e-6)):
        return _verdict(False, "", "U and V should have orthonormal columns (take them from an SVD).")
    full = [torch.as_tensor(t, dtype=torch.float64) for t in _call(fn, w, (12, 8), case="full ranks (12, 8)")]
    exact = float((reconstruct(*full) - w).norm() / w.norm())
    mine = float((reconstruct(core, u, v) - w).norm() / w.norm())
    ref = float((reconstruct(*tucker2(w, (5, 4))) - w).norm() / w.norm())
    ok = exact < 1e-8 and mine <= 1.1 * ref
    return _verdict(ok, f"relative error {mine:.4f} at ranks (5, 4) (tensorly's HOOI: {ref:.4f}); exact at full rank.",
                    f"relative error {mine:.4f} at ranks (5, 4) (HOOI: {ref:.4f}) and {exact:.2e} at full rank. "
                    "If the factors are right (they passed the shape and orthonormality checks), look at the core: it "
                    "is W with its output mode projected on U and its input mode on V (eq. 4).")


def check_space_size(answer, layers: int = 13, span: int = 2) -> bool:
    """Exercise (mending): how many candidates has a search space of ``layers`` widths, each ``c0 + d * step``
    with ``d`` in ``-span..span``? (Before the budget removes some.)"""
    if _missing(answer):
        return False
    truth = (2 * span + 1) ** layers
    return _verdict(int(answer) == truth, f"(2 x {span} + 1) ** {layers} = {truth:,} candidates: no search evaluates "
                    f"more than a sliver of them, which is why the evaluation must be fast and the search guided.",
                    f"you gave {int(answer):,}. Each of the {layers} layers chooses one of {2 * span + 1} values of d, "
                    f"independently of the others.")


@_guarded
def check_repair(fn, layers: int = 6, span: int = 2, trials: int = 200) -> bool:
    """Exercise (mending): ``fn(genes, macs, budget, span, rng)`` returns a repaired candidate: within the
    budget, every ``d`` in ``-span..span``, only lowered (never raised), and unchanged if already within budget.
    Checked on random candidates with a synthetic MACs function."""
    import random

    weights = [3, 8, 5, 13, 2, 7][:layers] + [1] * max(0, layers - 6)
    macs = lambda g: sum(w * (10 + d) for w, d in zip(weights, g))  # noqa: E731 - grows with every d
    budget = macs([0] * layers)
    rng = random.Random(0)
    for _ in range(trials):
        genes = tuple(rng.randint(-span, span) for _ in range(layers))
        out = _call(fn, genes, macs, budget, span, random.Random(1), case=f"the candidate {genes}")
        if _missing_function(out):
            return False
        out = tuple(out)
        if len(out) != layers or macs(out) > budget:
            return _verdict(False, "", f"{genes} was repaired to {out}, which costs {macs(out)} > budget {budget}. "
                            "Keep lowering a d that can still go down while the cost is over the budget.")
        if any(not -span <= d <= span for d in out) or any(o > g for o, g in zip(out, genes)):
            return _verdict(False, "", f"{genes} -> {out}: repair may only lower d, and never below -{span}.")
        if macs(genes) <= budget and out != genes:
            return _verdict(False, "", f"{genes} was already within budget; return it unchanged.")
    return _verdict(True, f"{trials} random candidates repaired, each within budget and only lowered.", "")


@_guarded
def check_projection(fn, trials: int = 50) -> bool:
    """Exercise (sparse binary programming): ``fn(z, k)`` returns the projection of ``z`` onto the sparse binary
    set, a 0/1 tensor with ones at the ``k`` largest entries, ties to the lower index. Compared with
    :func:`pruning.methods.supermask.topk_mask` on random vectors, some with ties."""
    import torch

    from .methods.supermask import topk_mask

    g = torch.Generator().manual_seed(0)
    for t in range(trials):
        n = int(torch.randint(3, 12, (1,), generator=g))
        z = torch.rand(n, generator=g)
        if t % 3 == 0:
            z = (z * 3).floor() / 3           # few distinct values: ties
        k = int(torch.randint(0, n + 1, (1,), generator=g))
        out = _call(fn, z.clone(), k, case=f"a vector of {n} entries, k = {k}")
        if _missing_function(out):
            return False
        out = torch.as_tensor(out, dtype=z.dtype).flatten()
        truth = topk_mask(z, k)
        if out.shape != truth.shape or not torch.equal(out, truth):
            ties = "; note the ties: equal values go to the lower index" if len(z.unique()) < n else ""
            return _verdict(False, "", f"for z = {[round(v, 2) for v in z.tolist()]} and k = {k} you returned "
                            f"{out.tolist()}, expected {truth.tolist()}{ties}. The projection puts its k ones where z "
                            "is largest; when values tie, the lower index goes first.")
    return _verdict(True, f"{trials} vectors (some with ties) projected exactly: k ones at the k largest entries, "
                    "the binary vector with k ones closest to z.", "")


@_guarded
def check_sbp_step(fn, trials: int = 20) -> bool:
    """Exercise (sparse binary programming): ``fn(z, grad, w0, lr)`` is one projected gradient step on the
    relaxed mask (eq. 4 of notebook 05), where ``grad`` is dL/dW_eff; compared with the step worked here."""
    import torch

    g = torch.Generator().manual_seed(1)
    for _ in range(trials):
        z, grad = torch.rand(6, generator=g), torch.randn(6, generator=g)
        w0 = (torch.randint(0, 2, (6,), generator=g) * 2 - 1) * 0.5
        lr = float(torch.rand(1, generator=g)) * 2
        out = _call(fn, z.clone(), grad, w0, lr, case="a vector of 6 entries")
        if _missing_function(out):
            return False
        truth = (z - lr * grad * w0).clamp(0, 1)
        out = torch.as_tensor(out, dtype=z.dtype)
        if out.shape != truth.shape or not torch.allclose(out, truth, atol=1e-6):
            unclipped = torch.allclose(out, z - lr * grad * w0, atol=1e-6)
            return _verdict(False, "", "the step is right but the result leaves the box the relaxed mask lives in."
                            if unclipped else "grad is dL/dW_eff, not dL/dz: follow the chain rule through "
                            "W_eff = w0 * m, with the top-k passed straight through, and then keep z in its box.")
    return _verdict(True, "a gradient step, straight through the projection, then back into the box [0, 1].", "")


def check_random_overlap(answer, sparsity: float) -> bool:
    """Exercise (sparse binary programming): the expected overlap (fraction of one mask's kept weights that the
    other keeps too) of two independent random masks at ``sparsity``. Checked against a simulation."""
    if _missing(answer):
        return False
    import torch

    from .methods.supermask import overlap, topk_mask

    n, g = 100_000, torch.Generator().manual_seed(0)
    k = round((1 - sparsity) * n)
    simulated = overlap(topk_mask(torch.rand(n, generator=g), k), topk_mask(torch.rand(n, generator=g), k))
    return _verdict(abs(float(answer) - simulated) < 0.01,
                    f"two random masks share a fraction {simulated:.3f} of their kept weights (simulated); "
                    f"that is 1 - sparsity = {1 - sparsity:.2f}, the line the learned masks are compared with.",
                    f"you gave {float(answer):.3f}; a simulation gives {simulated:.3f}. Each weight the first mask "
                    "keeps is kept by the second with the probability that any one weight is kept.")


def check_iou(answer, a, b) -> bool:
    """Exercise (detection): the intersection over union of boxes ``a`` and ``b`` (x1, y1, x2, y2), by hand."""
    if _missing(answer):
        return False
    import torch

    from .digits import iou

    truth = float(iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))[0, 0])
    return _verdict(abs(float(answer) - truth) < 1e-3,
                    f"IoU = {truth:.3f}: {'a hit' if truth >= 0.5 else 'not a hit'} at mAP@0.5's threshold.",
                    f"you gave {float(answer):.3f}. Intersection: the overlap of the x ranges times the overlap of "
                    "the y ranges (0 if either is empty); union: area(a) + area(b) - intersection.")


def check_average_precision(answer, predictions, targets) -> bool:
    """Exercise (detection): the AP@0.5 of a few ranked detections with 101-point interpolation, by hand.
    Checked against torchmetrics' implementation (:func:`pruning.detector.average_precision`)."""
    if _missing(answer):
        return False
    from .detector import average_precision

    truth = average_precision(predictions, targets)["map50"]
    return _verdict(abs(float(answer) - truth) < 2e-3,
                    f"AP@0.5 = {truth:.4f}.",
                    f"you gave {float(answer):.4f}. Rank the detections by score; after each one write down recall "
                    "(hits so far / true boxes) and precision (hits so far / detections so far); make precision "
                    "non-increasing from the right; then average it at the 101 recalls 0, 0.01, ..., 1 "
                    "(0 beyond the highest recall reached).")


@_guarded
def check_surgery(fn) -> bool:
    """Exercise (notebook 00): ``fn(conv1, bn, conv2, keep)`` removes the output channels of ``conv1`` not in
    ``keep`` (a sorted list) and returns three **new** modules ``(conv1, bn, conv2)`` that compute exactly what the
    original block computes with those channels switched off. Checked on random blocks (with and without bias, 1x1
    and 3x3, keep all, keep one) against the masked original, in eval mode, within 1e-5."""
    import copy

    import torch

    for conv1, bn, conv2, keep, case in _surgery_cases():
        originals = [copy.deepcopy(m.state_dict()) for m in (conv1, bn, conv2)]
        out = _call(fn, conv1, bn, conv2, list(keep), case=case)
        if _missing_function(out):
            return False
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            return _verdict(False, "", "return a tuple of three modules: (new conv1, new BatchNorm, new conv2).")
        c1, b, c2 = out
        if any(not all(torch.equal(v, m.state_dict()[k]) for k, v in o.items())
               for o, m in zip(originals, (conv1, bn, conv2))):
            return _verdict(False, "", f"on {case} your function changed the original modules. Build new ones "
                            "(copy.deepcopy, or new nn.Conv2d / nn.BatchNorm2d) and leave the originals as they were.")
        n = len(keep)
        shapes = {"conv1's output channels": (getattr(c1, "out_channels", None), c1.weight.shape[0]),
                  "the BatchNorm's features": (getattr(b, "num_features", None), b.running_mean.shape[0]),
                  "conv2's input channels": (getattr(c2, "in_channels", None), c2.weight.shape[1])}
        for what, sizes in shapes.items():
            if any(size != n for size in sizes):
                return _verdict(False, "", f"on {case}: {what} should be {n} (one per kept channel), found "
                                f"{sizes[1]}. A kept channel is a filter of conv1, a feature of the BatchNorm and an "
                                f"input of conv2; every tensor indexed by that channel has to shrink.")
        x = torch.randn(4, conv1.in_channels, 8, 8, generator=torch.Generator().manual_seed(1))
        mask = torch.zeros(1, bn.num_features, 1, 1)
        mask[:, keep] = 1
        with torch.no_grad():
            want = conv2(torch.relu(bn(conv1(x))) * mask)
            got = c2.eval()(torch.relu(b.eval()(c1.eval()(x))))
        same = got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5)
        err = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
        if not same:
            return _verdict(False, "", f"on {case} the operated block's output differs from the original's with those "
                            f"channels switched off by {err:.2g}. Every per-channel tensor must be sliced with the same "
                            "indices and in the same order: conv1's weight and bias, the BatchNorm's weight, bias, "
                            "running mean and running variance, and conv2's weight along its input dimension.")
    return _verdict(True, "your surgery matches the masked block on five random blocks, keep-all and keep-one "
                    "included. That is what `surgery.remove_channels` does for every group of a network.", "")



@_guarded
def check_iou_function(fn, trials: int = 30) -> bool:
    """Exercise (notebook 07): ``fn(a, b)`` returns the IoU of every box of ``a`` (n, 4) with every box of ``b``
    (m, 4), boxes as (x1, y1, x2, y2), an (n, m) tensor. Compared with :func:`pruning.digits.iou` on edge cases
    (identical, disjoint, touching, one inside the other) and random sets of boxes."""
    import torch

    from .digits import iou

    t = lambda *boxes: torch.tensor(boxes, dtype=torch.float64)   # noqa: E731
    cases = [("two identical boxes", t([0, 0, 10, 10]), t([0, 0, 10, 10])),
             ("two disjoint boxes", t([0, 0, 10, 10]), t([20, 20, 30, 30])),
             ("boxes that touch along an edge", t([0, 0, 10, 10]), t([10, 0, 20, 10])),
             ("a box inside another", t([0, 0, 10, 10]), t([2, 2, 6, 6])),
             ("boxes apart in x but overlapping in y", t([0, 0, 10, 10]), t([12, 0, 20, 10]))]
    gen = torch.Generator().manual_seed(0)
    for trial in range(trials):
        n, m = (int(v) for v in torch.randint(1, 6, (2,), generator=gen))
        corners = lambda k: torch.rand(k, 2, generator=gen, dtype=torch.float64) * 50   # noqa: E731
        a0, b0 = corners(n), corners(m)
        a = torch.cat([a0, a0 + 1 + torch.rand(n, 2, generator=gen, dtype=torch.float64) * 30], 1)
        b = torch.cat([b0, b0 + 1 + torch.rand(m, 2, generator=gen, dtype=torch.float64) * 30], 1)
        cases.append((f"{n} random boxes against {m}", a, b))
    for case, a, b in cases:
        got = _call(fn, a.clone(), b.clone(), case=case)
        if _missing_function(got):
            return False
        got = torch.as_tensor(got, dtype=torch.float64)
        want = iou(a, b)
        if got.shape != want.shape:
            return _verdict(False, "", f"for {case} the answer should have shape {tuple(want.shape)} (one row per box of "
                            f"a, one column per box of b), yours has {tuple(got.shape)}. Broadcasting a[:, None] "
                            "against b[None, :] gives every pair at once.")
        if not torch.allclose(got, want, atol=1e-9):
            i, j = divmod(int((got - want).abs().argmax()), want.shape[1])
            return _verdict(False, "", f"for {case}, pair ({i}, {j}): you give {float(got[i, j]):.4f}, the IoU is "
                            f"{float(want[i, j]):.4f}. Check the empty intersection (it must be 0, never negative) and "
                            "that the union counts the intersection once.")
    return _verdict(True, f"Your IoU matches on {len(cases)} cases, edge cases included: it is the test that decides "
                    "whether a detection is a hit.", "")


def _ap_case(hits, n_true):
    """Predictions and targets for one image in which the ranked detections hit (True) or miss (False) as given."""
    import torch

    truth = torch.tensor([[20.0 * i, 0, 20.0 * i + 10, 10] for i in range(n_true)])
    boxes, found = [], 0
    for hit in hits:
        if hit:
            boxes.append(truth[found].tolist())
            found += 1
        else:
            boxes.append([20.0 * len(boxes), 50, 20.0 * len(boxes) + 10, 60])   # away from every true box
    k = len(boxes)
    preds = [{"boxes": torch.tensor(boxes).reshape(k, 4), "scores": torch.linspace(0.9, 0.1, k) if k else torch.zeros(0),
              "labels": torch.ones(k, dtype=torch.long)}]
    targets = [{"boxes": truth, "labels": torch.ones(n_true, dtype=torch.long)}]
    return preds, targets


@_guarded
def check_ap_function(fn, trials: int = 12) -> bool:
    """Exercise (notebook 07): ``fn(hits, n_true)`` returns the 101-point interpolated AP of one class, given whether
    each detection, in order of decreasing score, is a hit (``hits``, a list of booleans) and how many true boxes
    there are. Compared with torchmetrics' COCO evaluation (:func:`pruning.detector.average_precision`) on
    hand-made and random rankings."""
    import random

    from .detector import average_precision

    cases = [([True, False, True, False], 3), ([True, True, True], 3), ([False, False], 2), ([False, True], 1),
             ([True], 4)]
    rng = random.Random(0)
    for _ in range(trials):
        n_true = rng.randint(1, 6)
        hits = [rng.random() < 0.6 for _ in range(rng.randint(1, 8))]
        while sum(hits) > n_true:                        # a detection can only hit a box that is still unmatched
            hits[max(i for i, h in enumerate(hits) if h)] = False
        cases.append((hits, n_true))
    for hits, n_true in cases:
        case = f"hits = {hits} with {n_true} true boxes"
        got = _call(fn, list(hits), n_true, case=case)
        if _missing_function(got):
            return False
        want = average_precision(*_ap_case(hits, n_true))["map50"]
        want = max(want, 0.0)                            # torchmetrics reports -1 for "no detection": AP 0 here
        if abs(float(got) - want) > 2e-3:
            return _verdict(False, "", f"for {case} you give {float(got):.4f}, the AP is {want:.4f}. Walk down the "
                            "ranking keeping precision and recall; at each of the 101 recall levels take the best "
                            "precision reached at that recall or beyond (0 if it is never reached).")
    return _verdict(True, f"Your AP matches the COCO evaluation on {len(cases)} rankings. mAP@0.5 is this number "
                    "averaged over the classes.", "")


LEADERBOARD = "leaderboard.jsonl"


def challenge(keep, model: nn.Module, data, name: str = "me", reduction: float = 0.5, epochs: int = 2,
              images: int = 768, seed: int = 0, board=None) -> float | None:
    """The class challenge of notebook 06: ``keep`` (``{conv: channel indices}``, from any criterion and any
    allocation the learner likes) must remove at least ``reduction`` of the model's MACs. It then gets the same repair
    as every method of the capstone: surgery, BN recalibration, ``epochs`` x ``images`` images of fine-tuning (SGD,
    cosine from 0.01). The score is the accuracy on the test images, held out from every choice. Each entry is
    appended to a local leaderboard file (JSON lines; by default ``results/live/leaderboard.jsonl``, ignored by git),
    and the board is printed. Returns the score, or None when there is no valid answer."""
    import json
    from pathlib import Path

    from .pipeline import prune_and_finetune
    from .select import macs_removed
    from .surgery import channel_groups

    if keep is None:
        print("No answer yet: build a keep dict ({conv name: channel indices to keep}) and run the cell again.")
        return None
    convs = {g.conv for g in channel_groups(model)}
    unknown = sorted(set(keep) - convs)
    if not isinstance(keep, dict) or unknown:
        print(f"Not yet. The keep dict's keys must be prunable convs of the model ({sorted(convs)[:3]} ...); "
              f"unknown: {unknown[:3]}.")
        return None
    if any(len(v) == 0 for v in keep.values()):
        print("Not yet. Every conv must keep at least one channel.")
        return None
    removed = macs_removed(model, {n: sorted(int(i) for i in v) for n, v in keep.items()})
    if removed < reduction:
        print(f"Not yet. Your selection removes {removed:.1%} of the MACs; the challenge asks for at least "
              f"{reduction:.0%}. Remove more channels (the MACs of a conv fall with its outputs and its next layer's "
              "inputs).")
        return None
    outcome = prune_and_finetune(model, {n: sorted(int(i) for i in v) for n, v in keep.items()}, data, epochs,
                                 samples_per_epoch=images, lr=0.01, recal_batches=10, seed=seed, progress=False,
                                 eval_val=False)
    path = Path(board) if board else Path(__file__).resolve().parents[1] / "results" / "live" / LEADERBOARD
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"name": str(name), "test": outcome.test, "macs_removed": outcome.reduction, "seed": seed,
             "n_test": len(data.y_test)}
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    board_rows = sorted((json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()),
                        key=lambda e: -e["test"])
    se = (outcome.test * (1 - outcome.test) / len(data.y_test)) ** 0.5
    print(f"Your score: {outcome.test:.2%} on {len(data.y_test):,} held-out test images (one standard error about "
          f"{100 * se:.1f} points), {outcome.reduction:.1%} of the MACs removed.")
    print("Leaderboard (" + str(path) + "):")
    for rank, e in enumerate(board_rows[:10], start=1):
        print(f"  {rank:2d}. {e['name']:<16s} {e['test']:.2%}  (-{e['macs_removed']:.1%} MACs, seed {e['seed']})")
    print("Two entries closer than about two standard errors are not told apart by this test set.")
    return outcome.test


def check_prediction(answer, dense: nn.Module, pruned: nn.Module, runs: int = 40, tolerance: float = 0.25) -> bool:
    """Exercise (notebook 00, speed): the learner predicts ``pruned``'s speed-up over ``dense`` in ONNX Runtime at
    batch 1 on one thread, *before* measuring it. The check then exports both, times them interleaved, and says how
    close the prediction came (within ``tolerance``, relative, counts as right) next to the FLOPs' own prediction."""
    if _missing(answer):
        return False
    import tempfile
    from pathlib import Path

    from . import deploy
    from .measure import speedups

    with tempfile.TemporaryDirectory() as tmp:
        runners = {k: deploy.OnnxModel(deploy.export_onnx(m, Path(tmp) / f"{k}.onnx", dynamo=False))
                   for k, m in (("dense", dense), ("pruned", pruned))}
        measured = speedups(runners, runs=runs, warmup=5)["pruned"]
    flops = macs(dense) / macs(pruned)
    off = float(answer) / measured - 1
    return _verdict(abs(off) <= tolerance,
                    f"you predicted {float(answer):.2f}x; ONNX Runtime measured {measured:.2f}x (the FLOPs predict "
                    f"{flops:.2f}x). A student who can predict a speed-up before measuring it can choose a budget.",
                    f"you predicted {float(answer):.2f}x, ONNX Runtime measured {measured:.2f}x ({off:+.0%}); the FLOPs "
                    f"predict {flops:.2f}x. Which of section 7's factors did your prediction leave out, or count twice?")


def _traced_cases(seed: int = 0):
    """Three small traced models (plain, residual, depthwise) with their full per-layer MACs and a few ``kept``
    counts each, keep-all and keep-one first: the cases of :func:`check_macs_after`."""
    import torch
    from torch import nn

    from . import tracing
    from .measure import layer_macs
    from .surgery import widths as group_widths

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.a, self.b = nn.Conv2d(8, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.stem(x)))
            x = torch.relu(x + self.b(torch.relu(self.a(x))))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(12 * 8 * 8, 10))
    depthwise = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                              nn.Conv2d(8, 6, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))
    gen = torch.Generator().manual_seed(seed)
    for name, model in (("a plain CNN", plain), ("a CNN with a residual sum", Residual()),
                        ("a CNN with a depthwise conv", depthwise)):
        tracing.attach(model, torch.zeros(1, 3, 8, 8))
        groups, widths = model.channel_groups(), group_widths(model)
        base = layer_macs(model)
        choices = [dict(widths), {n: 1 for n in widths},
                   *({n: int(torch.randint(1, w + 1, (1,), generator=gen)) for n, w in widths.items()} for _ in range(3))]
        for k, kept in enumerate(choices):
            what = ("keep every channel", "keep one channel per group")[k] if k < 2 else "a random selection"
            yield base, groups, widths, kept, f"{name}, {what}"


@_guarded
def check_macs_after(fn) -> bool:
    """Exercise (notebook 08): ``fn(base, groups, widths, kept)`` returns the model's MACs after each group keeps
    ``kept[g.conv]`` of its ``widths[g.conv]`` channels, from the full model's per-layer MACs ``base`` alone (no
    surgery). Checked against :func:`pruning.select.macs_after` (and so against surgery and a recount, which its
    tests compare) on a plain, a residual and a depthwise model, within one MAC."""
    from . import select

    for base, groups, widths, kept, case in _traced_cases():
        got = _call(fn, dict(base), list(groups), dict(widths), dict(kept), case=case)
        if _missing_function(got):
            return False
        want = select._macs_from(base, groups, widths, kept)
        if not isinstance(got, (int, float)) or abs(got - want) > 1:
            own = {g.conv: kept[g.conv] / widths[g.conv] for g in groups}
            only_conv = round(sum(m * own.get(n, 1.0) for n, m in base.items()))   # the usual slip
            hint = (f"on {case} you return {got!r}; the MACs after pruning are {want:,}. ")
            if isinstance(got, (int, float)) and abs(got - only_conv) <= 1:
                hint += ("You scaled each group's own conv, but not the layers that read its channels: every layer in "
                         "g.members (coupled and depthwise convs, and the consumers, whose inputs shrink) scales by "
                         "the kept fraction.")
            else:
                hint += ("Start from every layer's full MACs; for each group, multiply the MACs of every layer in "
                         "g.members by kept / width. A layer in two groups (it writes one group's channels and reads "
                         "another's) is multiplied by both fractions.")
            return _verdict(False, "", hint)
    return _verdict(True, "your count matches the engine's on a plain, a residual and a depthwise model. It is "
                    "select.macs_after, the count behind every MACs budget in the course.", "")
