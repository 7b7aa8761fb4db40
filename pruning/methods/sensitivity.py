"""Second-order (OBD-style) sensitivity, extended from weights to channels.

Yang Chenbin. *Channel Pruning of Convolutional Neural Network based on Sensitivity*. Psychology of
China, 2024, 6(11): 46-53 (related English version: C. Yang, H. Liu, Neurocomputing 507 (2022) 97-106).
The weight-level criterion is Optimal Brain Damage: Y. LeCun, J. Denker, S. Solla, NeurIPS 1989.

Stated: second-order sensitivity is the criterion; a channel's sensitivity is the sum of its weights'
sensitivities; the least sensitive channels go. Reconstructed here:

1. Expand the loss around the trained weights, for a change dw:

       dE = g^T dw + 1/2 dw^T H dw + O(|dw|^3)                                        (1)

   At a minimum g ~ 0, so the second-order term dominates. Keep only the diagonal of H (OBD):

       dE ~ 1/2 sum_i h_ii dw_i^2                                                      (2)

2. Removing weight i sets dw_i = -w_i, so its sensitivity is

       s_i = 1/2 h_ii w_i^2                                                            (3)

3. Removing output channel c of a conv removes all its weights W_c at once (dw = -W_c on them, 0
   elsewhere), so by (1) with g = 0, dE ~ 1/2 W_c^T H_cc W_c; under the diagonal approximation the
   cross terms vanish and

       S_c = 1/2 sum_{i in c} h_ii w_i^2 = sum_{i in c} s_i                            (4, the sum rule)

4. The diagonal h is estimated, never formed:
   - Hutchinson: h = E_z[z * (H z)] for Rademacher z (entries +-1), with H z by double backward   (5)
   - empirical Fisher: h ~ mean over samples n of (dL_n/dw)^2, per-sample gradients by torch.func  (6)
5. Channels of all layers are ranked together by S_c (the values are loss changes, comparable across
   layers without normalisation) and removed until a FLOPs target is met. Optionally (the 2022
   version's idea, marked as such), layers with a larger top Hessian eigenvalue lambda_l (a sharper,
   more sensitive layer) get a lower pruning rate; lambda_l by power iteration on H z               (7)

Caveat worth knowing: with BatchNorm after a conv, zeroing a filter does not silence its channel (BN
still adds its shift); surgery removes the channel entirely. Eq. (4) scores the filter's weights only.
So we add (ours, not the paper's) the sum rule over the weights that *read* channel c, whose zeroing is
exactly what removal does, BatchNorm or not:

       S'_c = 1/2 sum_{consumers k} sum_{i in W_k[:, c]} h_ii w_i^2                    (4', input form)

and ``removal_check(..., remove=True)`` measures the loss change of the real removal to test both.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import Data, batches
from ..core import device_of, eval_mode
from ..measure import layer_macs
from ..replay import forward_after
from ..select import keep_for_macs, macs_after
from ..surgery import channel_groups, check_ratio, widths

Scores = dict[str, torch.Tensor]


def _weights(model: nn.Module, names=None) -> dict[str, nn.Parameter]:
    """The weights to score: every prunable conv's (default) or the named modules'."""
    names = [g.conv for g in channel_groups(model)] if names is None else list(names)
    return {n: model.get_submodule(n).weight for n in names}


def _batches(data: Data, num_batches: int, batch_size: int, seed: int, device: torch.device | None = None):
    """The scoring batches of one ``seed``, moved to ``device`` (left where they are, on the CPU, if None)."""
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    it = batches(data, "train", batch_size, train=False, shuffle=True, augmentation=False,
                 limit=num_batches * batch_size, seed=seed)
    if device is None:
        return it
    return ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in it)


def hvp(grads: list[torch.Tensor], params: list[torch.Tensor], vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Hessian-vector product H v by double backward: the gradient of (g . v) with respect to w, where
    ``grads`` = dL/dw was computed with ``create_graph=True``. The graph is kept for further products."""
    return list(torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True))


def rademacher(params: list[torch.Tensor], generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """One random vector per parameter with independent entries +1 or -1 (probability 1/2 each)."""
    # drawn on the CPU (where the generator lives), then moved to each parameter's device
    return [torch.randint(0, 2, p.shape, generator=generator).to(device=p.device, dtype=p.dtype) * 2 - 1
            for p in params]


def hutchinson_step(grads: list[torch.Tensor], params: list[torch.Tensor],
                    generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """One sample of eq. (5): z * (H z) for a Rademacher z. Its expectation is diag(H), because
    E[z_i z_j] = 1 if i = j and 0 otherwise, so E[z_i (H z)_i] = sum_j H_ij E[z_i z_j] = H_ii."""
    zs = rademacher(params, generator)
    return [z * hz for z, hz in zip(zs, hvp(grads, params, zs))]


def hessian_diagonal(model: nn.Module, data: Data, num_batches: int = 8, probes: int = 1,
                     batch_size: int = 128, names=None, seed: int = 0, progress: bool = True) -> Scores:
    """Eq. (5): Hutchinson's estimate of diag(H) of the training loss for each scored weight,
    averaged over ``num_batches`` mini-batches x ``probes`` Rademacher probes per batch.

    The model runs in eval mode (BatchNorm uses its running statistics). Returns ``{name: tensor}``
    shaped like each weight. The estimate is unbiased; its noise falls as 1/sqrt(samples).
    """
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    weights = _weights(model, names)
    params = list(weights.values())
    acc = [torch.zeros_like(p) for p in params]
    gen = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        n = 0
        bar = tqdm(total=num_batches * probes, desc="Hutchinson", disable=not progress, leave=False)
        for x, y in _batches(data, num_batches, batch_size, seed, device_of(model)):
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
            for _ in range(probes):
                for a, d in zip(acc, hutchinson_step(grads, params, gen)):
                    a += d
                n += 1
                bar.update(1)
        bar.close()
    return {name: a / n for name, a in zip(weights, acc)}


def fisher_diagonal(model: nn.Module, data: Data, num_batches: int = 4, batch_size: int = 64,
                    names=None, seed: int = 0, chunk: int = 32, progress: bool = True) -> Scores:
    """Eq. (6): the empirical Fisher diagonal, mean over samples of the squared per-sample gradient.

    Per-sample gradients come from ``torch.func`` (``vmap`` over ``grad`` of a one-sample loss), in
    chunks of ``chunk`` samples to bound memory. It needs only first derivatives (cheaper than
    Hutchinson) and is never negative; it equals the Hessian's diagonal only in special cases (a
    well-specified model at its optimum, labels drawn from the model).
    """
    from torch.func import functional_call, grad, vmap

    weights = _weights(model, names)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    keys = {name: f"{name}.weight" for name in weights}

    def one_loss(scored, x, y):
        out = functional_call(model, ({**params, **scored}, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(one_loss), in_dims=(None, 0, 0))
    scored = {keys[n]: params[keys[n]] for n in weights}
    acc = {n: torch.zeros_like(w) for n, w in weights.items()}
    count = 0
    with eval_mode(model):
        for x, y in tqdm(_batches(data, num_batches, batch_size, seed, device_of(model)), total=num_batches,
                         desc="Fisher", disable=not progress, leave=False):
            for i in range(0, len(y), chunk):
                g = per_sample(scored, x[i:i + chunk], y[i:i + chunk])
                for n in weights:
                    acc[n] += g[keys[n]].pow(2).sum(dim=0)
                count += len(y[i:i + chunk])
    return {n: a / count for n, a in acc.items()}


def exact_hessian(model: nn.Module, names, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact Hessian of the mean cross-entropy on ``(x, y)`` with respect to the named layers'
    weights, flattened and concatenated in that order. Costs one backward pass per weight: for toy
    models only (a few hundred weights), to check the estimators against the truth."""
    from torch.func import functional_call

    params = dict(model.named_parameters())
    weights = [params[f"{n}.weight"].detach() for n in names]
    x, y = x.to(device_of(model)), y.to(device_of(model))

    def loss(flat):
        chunks, i = {}, 0
        for n, w in zip(names, weights):
            chunks[f"{n}.weight"] = flat[i:i + w.numel()].view_as(w)
            i += w.numel()
        return F.cross_entropy(functional_call(model, {**params, **chunks}, (x,)), y)

    return torch.autograd.functional.hessian(loss, torch.cat([w.flatten() for w in weights])).cpu()


def hutchinson_samples(model: nn.Module, names, x: torch.Tensor, y: torch.Tensor, probes: int,
                       seed: int = 0) -> torch.Tensor:
    """``probes`` single Hutchinson samples z * (H z) on one batch, flattened like :func:`exact_hessian`:
    a ``(probes, n_weights)`` tensor. Its running mean shows the estimate converge."""
    params = [model.get_submodule(n).weight for n in names]
    x, y = x.to(device_of(model)), y.to(device_of(model))
    with eval_mode(model):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
        gen = torch.Generator().manual_seed(seed)
        out = torch.stack([torch.cat([d.flatten() for d in hutchinson_step(grads, params, gen)]).detach()
                           for _ in range(probes)])
    return out.cpu()


def first_batch(data: Data, batch_size: int, seed: int = 0,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch the estimators above see first for this ``seed`` (for comparing with exact values), on ``device``
    (pass ``device_of(model)``; the CPU if None)."""
    return next(iter(_batches(data, 1, batch_size, seed, device)))


def weight_sensitivity(model: nn.Module, hdiag: Mapping[str, torch.Tensor]) -> Scores:
    """Eq. (3): s_i = 1/2 h_ii w_i^2 for every weight of every scored layer (on the CPU, wherever the model is)."""
    weights = {n: model.get_submodule(n).weight.detach() for n in hdiag}
    return {n: (0.5 * h.to(weights[n].device) * weights[n] ** 2).cpu() for n, h in hdiag.items()}


def channel_sensitivity(model: nn.Module, hdiag: Mapping[str, torch.Tensor]) -> Scores:
    """Eq. (4), the sum rule: S_c = sum of s_i over output channel c's weights, for each prunable conv."""
    s = weight_sensitivity(model, hdiag)
    return {g.conv: s[g.conv].flatten(1).sum(dim=1) for g in channel_groups(model) if g.conv in s}


def consumer_layers(model: nn.Module) -> list[str]:
    """Every layer that reads a prunable conv's output channels: the next convs and, after the last conv, the
    classifier. Pass them as ``names`` to an estimator to get what :func:`input_sensitivity` needs."""
    return list(dict.fromkeys(c for g in channel_groups(model) for c in g.consumers))


def input_sensitivity(model: nn.Module, hdiag: Mapping[str, torch.Tensor], layers=None) -> Scores:
    """Eq. (4'), the sum rule over the weights that read channel c. Removing the channel deletes, in each
    consumer k, the inputs it feeds: dw = -W_k[:, c] there (a conv's input slice; a linear layer's columns
    of that channel after the flatten) and 0 elsewhere. Under the diagonal approximation

        S'_c = 1/2 sum_k sum_{i in W_k[:, c]} h_ii w_i^2                                (4')

    Unlike eq. (4), this perturbation *is* the removal: once nothing reads channel c, its filter, bias and
    BatchNorm shift no longer matter. ``hdiag`` must hold the diagonal of every consumer of the scored convs
    (all of them by default, ``fisher_diagonal(model, data, names=consumer_layers(model))``; only those named in
    ``layers`` otherwise)."""
    modules = dict(model.named_modules())
    out = {}
    for g in channel_groups(model):
        if layers is not None and g.conv not in layers:
            continue
        if g.depthwise:
            raise ValueError(f"input_sensitivity: {g.conv}'s channels pass through the depthwise conv "
                             f"{g.depthwise[0]}, so no consumer reads them directly")
        n = modules[g.conv].out_channels
        total = torch.zeros(n)
        for name in g.consumers:
            if name not in hdiag:
                raise KeyError(f"input_sensitivity needs the Hessian diagonal of consumer {name!r}: "
                               f"estimate it with names=consumer_layers(model)")
            layer = modules[name]
            s = 0.5 * hdiag[name].detach().cpu() * layer.weight.detach().cpu() ** 2          # eq. (3) per weight
            offset, width = g.segment(name) or (0, n)       # inside a concatenation: this group's segment
            if isinstance(layer, nn.Linear):                # flattened (C, H, W): channel-major columns
                per_input = s.sum(dim=0).view(width, -1).sum(dim=1)
            else:
                per_input = s.sum(dim=(0, 2, 3))
            total += per_input[offset:offset + n]
        out[g.conv] = total
    return out


def keep_for_flops(model: nn.Module, scores: Mapping[str, torch.Tensor], reduction: float,
                   input_size=None, min_keep: int = 1) -> dict[str, list[int]]:
    """Step 5: rank channels of all layers together by sensitivity (no normalisation: sensitivities are
    loss changes, already comparable) and remove the least sensitive until MACs fall by ``reduction``."""
    return keep_for_macs(model, scores, reduction, input_size, normalize="none", min_keep=min_keep)


def removal_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: str,
                  quadratic: bool = False, remove: bool = False) -> dict[str, torch.Tensor]:
    """For every output filter of ``layer``: the loss change actually measured on ``(x, y)`` when the
    filter's weights are set to zero, and the first-order prediction g . (-w_c) of eq. (1).
    Compare both with the second-order S_c of eq. (4) to see which term explains the damage.

    With ``quadratic=True`` also the full second-order term 1/2 W_c^T H_cc W_c of eq. (1), without the
    diagonal approximation (one Hessian-vector product per filter: for small layers).

    With ``remove=True`` also ``"removed"``: the loss change when the channel is really removed, which is
    what surgery computes. Its filter, bias and BatchNorm scale and shift are zeroed together, so nothing of
    the channel reaches the next layer (zeroing the filter alone leaves the BN shift flowing on)."""
    conv = model.get_submodule(layer)
    device = device_of(model)
    x, y = x.to(device), y.to(device)          # the batch follows the model; the results come back on the CPU
    with eval_mode(model):
        loss = F.cross_entropy(model(x), y)
        grads = list(torch.autograd.grad(loss, [conv.weight], create_graph=quadratic))
        w = conv.weight.detach()
        first = -(grads[0].detach() * w).flatten(1).sum(dim=1).cpu()
        out = {}
        if quadratic:
            quad = torch.zeros(conv.out_channels)
            for c in range(conv.out_channels):
                v = torch.zeros_like(w)
                v[c] = -w[c]
                (hv,) = hvp(grads, [conv.weight], [v])
                quad[c] = 0.5 * (v * hv).sum().item()
            out["quadratic"] = quad
        actual = torch.zeros(conv.out_channels)
        with torch.no_grad():
            forward = forward_after(model, [layer], x)       # model(x), rerunning only the layers from `layer` on
            for c in range(conv.out_channels):
                with _zeroed(conv.weight, c):
                    actual[c] = (F.cross_entropy(forward(), y) - loss.detach()).item()
        if remove:
            out["removed"] = removal_losses(model, x, y, layer, base=float(loss.detach()))
    return {"actual": actual, "first_order": first, **out}


@contextmanager
def _zeroed(*tensors_and_index):
    """Temporarily set entry ``c`` of each tensor to zero: ``_zeroed(t1, t2, ..., c)``."""
    *tensors, c = tensors_and_index
    saved = [t[c].clone() for t in tensors]
    with torch.no_grad():
        for t in tensors:
            t[c] = 0
    try:
        yield
    finally:
        with torch.no_grad():
            for t, v in zip(tensors, saved):
                t[c] = v


def removal_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: str,
                   base: float | None = None) -> torch.Tensor:
    """Loss change on ``(x, y)`` of removing each output channel of ``layer``, in eval mode: every tensor that
    writes the channel is zeroed (the filters of the conv and of any conv coupled to it, their biases, the
    BatchNorms' scale and shift), so the model computes what ``surgery.remove_channels`` computes without that
    channel. ``base`` is the unpruned loss on ``(x, y)`` when the caller has it."""
    g = next((g for g in channel_groups(model) if g.conv == layer), None)
    if g is None:
        raise ValueError(f"removal_losses: {layer!r} is not a prunable conv of this model")
    if g.depthwise or g.offsets:
        raise ValueError(f"removal_losses handles plain groups; {layer}'s channels pass through a "
                         f"depthwise conv or a concatenation")
    writers = []
    for name in (g.conv, *g.coupled, *g.all_norms):
        m = model.get_submodule(name)
        writers += [t for t in (m.weight, m.bias) if t is not None]
    removed = torch.zeros(model.get_submodule(layer).out_channels)
    x, y = x.to(device_of(model)), y.to(device_of(model))
    with eval_mode(model), torch.no_grad():
        base = float(F.cross_entropy(model(x), y)) if base is None else base
        forward = forward_after(model, [g.conv, *g.coupled, *g.all_norms], x)   # skips what comes before them
        for c in range(len(removed)):
            with _zeroed(*writers, c):
                removed[c] = float(F.cross_entropy(forward(), y)) - base
    return removed


def top_eigenvalue(model: nn.Module, data: Data, name: str, iterations: int = 20, batch_size: int = 128,
                   seed: int = 0) -> float:
    """Eq. (7), the 2022 version's idea: the largest eigenvalue of the Hessian block of one layer's
    weight, by power iteration v <- H v / |H v| on one fixed mini-batch (Rayleigh quotient returned)."""
    weight = model.get_submodule(name).weight
    with eval_mode(model):
        x, y = first_batch(data, batch_size, seed, device=weight.device)
        loss = F.cross_entropy(model(x), y)
        grads = list(torch.autograd.grad(loss, [weight], create_graph=True))
        # drawn on the CPU (the same start vector on every device), then moved to the weight's
        v = torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed)).to(weight.device)
        v /= v.norm()
        eig = 0.0
        for _ in range(iterations):
            (hv,) = hvp(grads, [weight], [v])
            eig = float((hv * v).sum())  # Rayleigh quotient v^T H v with |v| = 1
            v = hv / hv.norm().clamp_min(1e-12)
    return eig


def rates_for_flops(model: nn.Module, eigenvalues: Mapping[str, float], reduction: float, max_rate: float = 0.9,
                    input_size=None, iterations: int = 40) -> dict[str, float]:
    """Eq. (7)'s rates with a FLOPs target that is met: rate_l = min(max_rate, s / lambda_l) for one scale s,
    found by bisection so that removing floor(rate_l * n_l) filters of every layer cuts the model's MACs by at
    least ``reduction`` (counted from the layer sizes, as ``select.uniform_ratio_for`` counts them). Unlike
    :func:`rates_from_eigenvalues`, which sets the plain mean of the rates, this weighs each layer by what its
    channels cost, so a rate given to a cheap deep layer does not count as much as one given to conv 1."""
    check_ratio(reduction, "reduction")
    base = layer_macs(model, input_size)
    total, full = sum(base.values()), widths(model)
    inv = {n: 1.0 / max(e, 1e-12) for n, e in eigenvalues.items()}

    def rates(s: float) -> dict[str, float]:
        return {n: min(max_rate, s * v) for n, v in inv.items()}

    def reduced(s: float) -> float:
        kept = {n: max(1, w - math.floor(rates(s).get(n, 0.0) * w)) for n, w in full.items()}
        return 1 - macs_after(model, kept, input_size, base) / total

    hi = max_rate / min(inv.values())          # every layer at max_rate
    if reduced(hi) < reduction:
        raise ValueError(f"rates capped at {max_rate} on {len(inv)} layers cut at most {reduced(hi):.1%} of the MACs")
    lo = 0.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reduced(mid) >= reduction else (mid, hi)
    return rates(hi)


def rates_from_eigenvalues(eigenvalues: Mapping[str, float], mean_rate: float, max_rate: float = 0.9) -> dict[str, float]:
    """Per-layer pruning rates inversely proportional to each layer's top eigenvalue, scaled so that
    their plain mean is ``mean_rate`` (then clipped to ``[0, max_rate]``): sharp layers lose less."""
    check_ratio(mean_rate, "mean_rate")
    inv = {n: 1.0 / max(e, 1e-12) for n, e in eigenvalues.items()}
    scale = mean_rate * len(inv) / sum(inv.values())
    return {n: min(max_rate, v * scale) for n, v in inv.items()}
