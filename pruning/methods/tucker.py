"""Tucker-2 decomposition of a convolution into three cheaper ones: 1x1 -> k x k -> 1x1.

Paper 3 (Gong, Zhang & Zeng 2020) decomposes the high-dimensional convolutions of its detector "into three
cascaded convolutional layers"; the construction is the Tucker-2 scheme of Kim et al., "Compression of deep
convolutional neural networks for fast and low power mobile applications", ICLR 2016.

A conv weight is a 4-way tensor ``W[o, i, y, x]`` (O outputs, I inputs, k x k kernel). Tucker-2 compresses
only the two channel modes:

    W  ~=  G  x_0 U  x_1 V,    i.e.  W[o,i,y,x] ~= sum_{a,b} U[o,a] G[a,b,y,x] V[i,b]          (4)

with ``U`` (O x R_out) and ``V`` (I x R_in) orthonormal columns and a small core ``G`` (R_out x R_in x k x k).
Read from right to left, (4) is three convolutions applied one after another:

    1x1 conv, I -> R_in,   weight V^T        (project the input channels)
    kxk conv, R_in -> R_out, weight G        (the spatial work, with the original stride/padding/dilation)
    1x1 conv, R_out -> O,  weight U, + bias  (expand back to the output channels)                 (5)

(Equations are numbered as in notebook 03, after :mod:`.mean_variance`'s (1)-(3).)

Cost for an input of H x W and output of H' x W' (eq. 6, checked against a counted forward pass in the tests):

    params = I R_in + R_in R_out k^2 + R_out O  (+ O bias)
    MACs   = H W I R_in + H' W' R_in R_out k^2 + H' W' R_out O         (the original: H' W' I O k^2)

The decomposition itself is tensorly's ``partial_tucker`` (higher-order orthogonal iteration, initialised
by the truncated HOSVD): a maintained, tested implementation that also improves on plain HOSVD's error.

Ranks: :func:`vbmf_rank` (empirical variational Bayesian matrix factorisation on the mode-0 and mode-1
unfoldings, as in Kim et al.), an energy rule (keep a fraction of each unfolding's squared singular values)
or a fixed ratio of the channels.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from ..surgery import clone, _set_module

Ranks = tuple[int, int]  # (R_out, R_in)


# --------------------------------------------------------------------------- the decomposition, eq. (4)

def check_ranks(weight: torch.Tensor, ranks: Sequence[int]) -> Ranks:
    """``(R_out, R_in)`` as ints after checking ``1 <= R_out <= O`` and ``1 <= R_in <= I``."""
    if weight.ndim != 4:
        raise ValueError(f"Tucker-2 needs a conv weight (O, I, kh, kw), got shape {tuple(weight.shape)}")
    if len(ranks) != 2:
        raise ValueError(f"ranks must be a pair (R_out, R_in), got {ranks!r}")
    out_ch, in_ch = weight.shape[:2]
    r_out, r_in = (int(r) for r in ranks)
    if not (1 <= r_out <= out_ch and 1 <= r_in <= in_ch) or (r_out, r_in) != tuple(ranks):
        raise ValueError(f"ranks {tuple(ranks)} out of range for a conv with {out_ch} outputs and {in_ch} inputs: "
                         f"need whole numbers 1 <= R_out <= {out_ch} and 1 <= R_in <= {in_ch}")
    return r_out, r_in


def tucker2(weight: torch.Tensor, ranks: Sequence[int], n_iter_max: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. (4): ``(core G, U, V)`` with ``W ~= G x_0 U x_1 V``, by tensorly's ``partial_tucker`` (HOOI).

    Computed in float64 with tensorly's NumPy backend (so the global tensorly backend is left alone) and
    returned in the weight's dtype, on its device. Deterministic: the SVD initialisation involves no randomness.
    """
    from tensorly.decomposition import partial_tucker

    r_out, r_in = check_ranks(weight, ranks)
    w = weight.detach().cpu().double().numpy()
    out = partial_tucker(w, rank=[r_out, r_in], modes=[0, 1], init="svd", n_iter_max=n_iter_max)
    # tensorly >= 0.9 returns ((core, factors), errors); older releases return (core, factors)
    core, (u, v) = out[0] if isinstance(out[0], (tuple, list)) else out
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(weight.device, weight.dtype)  # noqa: E731
    return as_t(core), as_t(u), as_t(v)


def reconstruct(core: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The right-hand side of eq. (4): ``sum_{a,b} U[o,a] G[a,b,y,x] V[i,b]``."""
    return torch.einsum("oa,abyx,ib->oiyx", u, core, v)


def relative_error(weight: torch.Tensor, ranks: Sequence[int]) -> float:
    """``||W - G x_0 U x_1 V|| / ||W||`` at the given ranks."""
    w = weight.detach().double()
    return float((reconstruct(*tucker2(w, ranks)) - w).norm() / w.norm())


# --------------------------------------------------------------------------- ranks

def unfold(weight: torch.Tensor, mode: int) -> torch.Tensor:
    """The mode-``mode`` unfolding: rows indexed by that mode, columns by all the others."""
    return weight.detach().double().movedim(mode, 0).flatten(1)


def vbmf_rank(matrix: torch.Tensor) -> int:
    """Rank chosen by empirical VBMF (Nakajima, Sugiyama, Babacan & Tomioka, JMLR 14, 2013, the global
    analytic solution with the noise variance estimated): the number of singular values above the
    VB threshold ``sqrt(M sigma^2 (1 + tau)(1 + alpha / tau))``, ``tau = 2.5129 sqrt(alpha)``, where
    ``alpha = L / M`` (L <= M the matrix's sides) and ``sigma^2`` minimises the free energy below."""
    y = matrix.detach().double().cpu()
    if y.ndim != 2 or min(y.shape) < 2:
        raise ValueError(f"VBMF needs a matrix with both sides >= 2, got shape {tuple(y.shape)}")
    big_l, big_m = sorted(y.shape)
    alpha = big_l / big_m
    s = torch.linalg.svdvals(y).numpy()  # L values, descending
    tau_low = 2.5129 * math.sqrt(alpha)
    x_low = (1 + tau_low) * (1 + alpha / tau_low)   # threshold on x = s^2 / (M sigma^2)

    def tau(x):  # the VB shrinkage of a component above the threshold
        return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))

    def free_energy(sigma2):
        x = s ** 2 / (big_m * sigma2)
        below, above = x[x <= x_low], x[x > x_low]
        t = tau(above)
        return (np.sum(below - np.log(below)) + np.sum(above - t) + np.sum(np.log((t + 1) / above))
                + alpha * np.sum(np.log(t / alpha + 1)))

    h_max = min(math.ceil(big_l / (1 + alpha)) - 1, big_l)  # VB keeps at most this many components
    upper = float(np.sum(s ** 2) / (big_l * big_m))
    lower = float(max(s[h_max] ** 2 / (big_m * x_low), np.mean(s[h_max:] ** 2) / big_m))
    if lower >= upper:
        sigma2 = upper
    else:
        sigma2 = minimize_scalar(free_energy, bounds=(lower, upper), method="bounded").x
    return int(np.sum(s > math.sqrt(big_m * sigma2 * x_low)))


def ranks_vbmf(weight: torch.Tensor) -> Ranks:
    """``(R_out, R_in)`` by VBMF on the mode-0 and mode-1 unfoldings (at least 1 each)."""
    return max(1, vbmf_rank(unfold(weight, 0))), max(1, vbmf_rank(unfold(weight, 1)))


def ranks_energy(weight: torch.Tensor, energy: float = 0.9) -> Ranks:
    """The smallest ranks whose singular values keep ``energy`` of each unfolding's squared norm."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")
    out = []
    for mode in (0, 1):
        s2 = torch.linalg.svdvals(unfold(weight, mode)) ** 2
        share = torch.cumsum(s2, 0) / s2.sum()
        out.append(min(len(s2), int((share < energy - 1e-12).sum()) + 1))
    return tuple(out)


def ranks_ratio(weight: torch.Tensor, ratio: float = 0.5) -> Ranks:
    """``ratio`` of each channel count, rounded, at least 1."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    return tuple(max(1, round(ratio * n)) for n in weight.shape[:2])


RULES = {"vbmf": ranks_vbmf, "energy": ranks_energy, "ratio": ranks_ratio}


def choose_ranks(weight: torch.Tensor, rule: str = "vbmf", value: float | None = None) -> Ranks:
    """Ranks by ``rule``: ``"vbmf"`` (no value), ``"energy"`` (value = energy kept) or ``"ratio"``."""
    if rule not in RULES:
        raise ValueError(f"rank rule must be one of {sorted(RULES)}, got {rule!r}")
    if rule == "vbmf":
        return RULES[rule](weight)
    return RULES[rule](weight) if value is None else RULES[rule](weight, value)


# --------------------------------------------------------------------------- the three convolutions, eq. (5)

class Tucker2Conv(nn.Sequential):
    """Eq. (5): ``first`` (1x1, I -> R_in), ``core`` (kxk, R_in -> R_out), ``last`` (1x1, R_out -> O, bias)."""

    def __init__(self, first: nn.Conv2d, core: nn.Conv2d, last: nn.Conv2d):
        super().__init__(OrderedDict(first=first, core=core, last=last))

    @property
    def ranks(self) -> Ranks:
        return self.core.out_channels, self.core.in_channels

    def full_weight(self) -> torch.Tensor:
        """The single k x k kernel these three convolutions compute (eq. 4 read backwards), detached."""
        return reconstruct(self.core.weight.detach(), self.last.weight.detach()[:, :, 0, 0],
                           self.first.weight.detach()[:, :, 0, 0].T)


def decompose_conv(conv: nn.Conv2d, ranks: Sequence[int]) -> Tucker2Conv:
    """Replace ``conv`` by eq. (5) at ``ranks = (R_out, R_in)``. Stride, padding, dilation and padding
    mode go to the k x k core; the bias (if any) to the last 1x1. At full ranks the output is the same."""
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ValueError("Tucker-2 applies to ordinary Conv2d layers (groups=1)")
    r_out, r_in = check_ranks(conv.weight, ranks)
    core, u, v = tucker2(conv.weight, (r_out, r_in))
    kw = dict(device=conv.weight.device, dtype=conv.weight.dtype)
    first = nn.Conv2d(conv.in_channels, r_in, 1, bias=False, **kw)
    middle = nn.Conv2d(r_in, r_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                       bias=False, padding_mode=conv.padding_mode, **kw)
    last = nn.Conv2d(r_out, conv.out_channels, 1, bias=conv.bias is not None, **kw)
    with torch.no_grad():
        first.weight.copy_(v.T[:, :, None, None])
        middle.weight.copy_(core)
        last.weight.copy_(u[:, :, None, None])
        if conv.bias is not None:
            last.bias.copy_(conv.bias)
    return Tucker2Conv(first, middle, last).train(conv.training)


def cost(conv: nn.Conv2d, ranks: Sequence[int] | None, in_hw: tuple[int, int]) -> dict[str, int]:
    """Eq. (6): parameters and MACs of ``conv`` (``ranks=None``) or of its Tucker-2 replacement, for one
    input of spatial size ``in_hw``."""
    kh, kw = conv.kernel_size
    h, w = in_hw
    oh = (h + 2 * conv.padding[0] - conv.dilation[0] * (kh - 1) - 1) // conv.stride[0] + 1
    ow = (w + 2 * conv.padding[1] - conv.dilation[1] * (kw - 1) - 1) // conv.stride[1] + 1
    o, i = conv.out_channels, conv.in_channels
    bias = o if conv.bias is not None else 0
    if ranks is None:
        return {"params": o * i * kh * kw + bias, "macs": oh * ow * o * i * kh * kw}
    r_out, r_in = check_ranks(conv.weight, ranks)
    return {"params": i * r_in + r_in * r_out * kh * kw + r_out * o + bias,
            "macs": h * w * i * r_in + oh * ow * r_in * r_out * kh * kw + oh * ow * r_out * o}


def decompose(model: nn.Module, ranks: Mapping[str, Sequence[int]], inplace: bool = False) -> nn.Module:
    """Replace every conv named in ``ranks`` by its Tucker-2 form (a copy of ``model`` by default)."""
    modules = dict(model.named_modules())
    for name, r in ranks.items():  # check everything before changing anything
        if not isinstance(modules.get(name), nn.Conv2d):
            raise ValueError(f"{name!r} is not a Conv2d of {type(model).__name__}")
        check_ranks(modules[name].weight, r)
    model = model if inplace else clone(model)
    for name, r in ranks.items():
        _set_module(model, name, decompose_conv(model.get_submodule(name), r))
    return model


def model_ranks(model: nn.Module, names: Sequence[str], rule: str = "vbmf", value: float | None = None) -> dict[str, Ranks]:
    """:func:`choose_ranks` for each named conv of ``model``."""
    return {n: choose_ranks(model.get_submodule(n).weight, rule, value) for n in names}
