r"""The fused head's arguments checked, and its default chunk size (shared by
:func:`crossent.torch.linear_cross_entropy` and its vocabulary-parallel form)."""

from __future__ import annotations

from typing import Any

import torch

from crossent.torch._options import check_class_weight, check_float_tensor, flatten_target

# rows per chunk by default: the float32 logits buffer holds about this many elements (64 MiB)
CHUNK_ELEMENTS = 1 << 24


# on CUDA: logits chunks of 128 Mi elements (256 MiB in bfloat16): GEMMs large enough to run
# at full speed, the weight's gradient read and written once per chunk only a few times
CHUNK_ELEMENTS_CUDA = 1 << 27


def default_chunk_size(
    n_rows: int, n_classes: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> int:
    """Rows per chunk. bfloat16 on the CPU: twice as many, the same 64 MiB (its logits buffer
    is in bfloat16), so the weight's gradient is rounded half as many times."""
    elements = CHUNK_ELEMENTS_CUDA if device.type == "cuda" else CHUNK_ELEMENTS
    if device.type == "cpu" and dtype == torch.bfloat16:
        elements *= 2
    return max(1, min(n_rows, elements // max(n_classes, 1)))


def prepare_head(
    input: torch.Tensor,
    weight: torch.Tensor,
    target: Any,
    bias: torch.Tensor | None,
    class_weight: torch.Tensor | None,
    chunk_size: Any,
    *,
    names: tuple[str, str] = ("weight", "bias"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int, tuple[int, ...]]:
    """The head's arguments checked: ``(x (N, D), target, class_weight, chunk, batch shape)``
    (``names``: what the weight and bias arguments are called)."""
    wname, bname = names
    check_float_tensor(input, "input")
    check_float_tensor(weight, wname)
    if input.ndim < 1:
        raise ValueError("input: expected a tensor of shape (..., D), got 0-d")
    if weight.ndim != 2 or weight.shape[1] != input.shape[-1]:
        raise ValueError(
            f"{wname}: expected shape (V, {input.shape[-1]}) for input of shape "
            f"{tuple(input.shape)}, got {tuple(weight.shape)}"
        )
    v, d = weight.shape
    if v == 0:
        raise ValueError(f"{wname}: expected at least one class (row), got 0")
    for name, t in ((wname, weight), (bname, bias), ("class_weight", class_weight)):
        if t is not None and t.device != input.device:
            raise ValueError(f"{name}: expected a tensor on {input.device}, got one on {t.device}")
    if weight.dtype != input.dtype:
        raise TypeError(f"{wname}: expected dtype {input.dtype} (input's), got {weight.dtype}")
    if bias is not None:
        check_float_tensor(bias, bname)
        if bias.shape != (v,):
            raise ValueError(f"{bname}: expected shape ({v},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype:
            raise TypeError(f"{bname}: expected dtype {input.dtype} (input's), got {bias.dtype}")
    cw = check_class_weight(class_weight, v, input.device, "class_weight")
    batch = tuple(input.shape[:-1])
    x = input.reshape(-1, d)
    t = flatten_target(target, input.device, batch, (*batch, v), -1)
    if chunk_size is None:
        chunk = default_chunk_size(x.shape[0], v, x.device, x.dtype)
    else:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected an int >= 1 or None, got {chunk_size!r}")
        chunk = chunk_size
    return x.contiguous(), t, cw, chunk, batch
