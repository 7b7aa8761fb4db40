"""Self-check functions for the notebooks' exercises.

Each ``check_*`` compares a student's answer with a value the package measures itself (never a
stored answer), prints a short verdict with a hint when wrong, and returns ``True`` / ``False``.
"""

from __future__ import annotations

from torch import nn

from .measure import macs


def _verdict(ok: bool, right: str, hint: str) -> bool:
    print(("Correct. " + right) if ok else ("Not yet. " + hint))
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
