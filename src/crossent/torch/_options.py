"""The PyTorch boundary: tensors checked, targets flattened, the loss spec applied to tensors.

The options, the target classification, the ``'mean'`` denominator and every message about
them come from :mod:`crossent._spec`; this module only adapts tensors to them (dtype kinds,
devices, layouts).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from crossent import _algebra, _spec
from crossent._spec import (
    LossKwargs,
    LossOptions,
    ModuleKwargs,
    Scales,
    TorchKwargs,
    TransformKwargs,
    make_options,
    options_for,
    options_from,
    takes_options,
)

__all__ = [
    "FLOAT_DTYPES",
    "Layout",
    "LossKwargs",
    "LossOptions",
    "ModuleKwargs",
    "Scales",
    "TorchKwargs",
    "TransformKwargs",
    "check_class_weight",
    "check_float_tensor",
    "flatten_target",
    "make_options",
    "options_for",
    "options_from",
    "reduce_rows",
    "scales_for",
    "takes_options",
    "transform",
    "use_triton",
]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# (class axis, target shape) in the user's layout: where errors report positions
Layout = tuple[int, tuple[int, ...]]


def check_float_tensor(t: Any, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{name}: expected a CPU or CUDA tensor, got one on {t.device}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a float16, bfloat16, float32 or float64 tensor, got {t.dtype}"
        )
    return t


def check_class_weight(
    weight: Any, n_classes: int, device: torch.device, name: str = "weight"
) -> torch.Tensor | None:
    """A float tensor of shape ``(C,)`` on ``device`` (its values are checked by the backend,
    through :func:`crossent._spec.check_class_weight`); weights are constants: one that requires
    grad (while autograd records) is refused, never silently left without a gradient."""
    if weight is None:
        return None
    check_float_tensor(weight, name)
    if tuple(weight.shape) != (n_classes,):
        _spec.check_class_weight(weight, n_classes, name)  # raises the shape message
    if weight.device != device:
        raise ValueError(f"{name}: expected a tensor on {device}, got one on {weight.device}")
    if weight.requires_grad and torch.is_grad_enabled():  # never a silently missing gradient
        raise ValueError(
            f"{name}: class weights are constants here (no gradient is computed for them), "
            f"got a tensor that requires grad; pass {name}.detach()"
        )
    return weight.detach()


def kind(t: torch.Tensor) -> str:
    """NumPy's dtype kind letter for a torch dtype (``'f'``, ``'i'``, ``'u'``, ``'b'``, ``'c'``)."""
    if t.is_floating_point():
        return "f"
    if t.is_complex():
        return "c"
    if t.dtype == torch.bool:
        return "b"
    return "u" if t.dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64) else "i"


def flatten_target(
    target: Any,
    device: torch.device,
    index_shape: tuple[int, ...],
    prob_shape: tuple[int, ...],
    class_dim: int,
) -> torch.Tensor:
    """``(M,)`` class indices (their own integer dtype) or ``(M, C)`` probabilities.

    ``index_shape``/``prob_shape`` are the shapes the target may have in the user's layout,
    ``class_dim`` the class dimension of the probabilities there.
    """
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target: expected a torch.Tensor, got {type(target).__name__}")
    if target.device != device:
        raise ValueError(f"target: expected a tensor on {device}, got one on {target.device}")
    k = _spec.classify_target(kind(target), target.dtype, tuple(target.shape), index_shape,
                              prob_shape)  # fmt: skip
    if k == "index":
        return target.reshape(-1)
    c = prob_shape[class_dim]
    q = target.movedim(class_dim, -1) if class_dim not in (-1, target.ndim - 1) else target
    return q.reshape(-1, c)


def scales_for(target: torch.Tensor, weight: torch.Tensor | None, opts: LossOptions) -> Scales:
    """The :class:`~crossent._spec.Scales` of a flattened target (one host sync on CUDA)."""
    if opts.reduction != "mean":
        return Scales()
    index = not target.is_floating_point()
    d, n = _spec.count_items(target, weight if index else None, opts.ignore_index)
    return _spec.mean_scales(opts, d, n, weighted=index and weight is not None)


def reduce_rows(
    rows: torch.Tensor, lse: torch.Tensor, target: torch.Tensor, opts: LossOptions, scales: Scales
) -> torch.Tensor:
    """The reduced loss (float64) from per-row losses, by :func:`crossent._algebra.reduce_rows`."""
    valid = target != opts.ignore_index if not target.is_floating_point() else None
    return _algebra.reduce_rows(rows.double(), lse.double(), valid, scales, opts.z_loss)


def use_triton(x: torch.Tensor, opts: LossOptions) -> bool:
    """CUDA tensors go to the Triton kernels; ``backend='triton'`` forces them (interpreter)."""
    if opts.backend == "triton" or (opts.backend == "auto" and x.device.type == "cuda"):
        if importlib.util.find_spec("triton") is None:
            raise ImportError(
                "crossent.torch: CUDA tensors run on Triton kernels; install triton "
                "(pip install triton, or the 'triton' extra of crossent)"
            )
        return True
    return False


def transform(z: torch.Tensor, opts: LossOptions) -> torch.Tensor:
    """The temperature then soft-capping (:func:`crossent._algebra.transform`), on a tensor:
    a new one, never ``z`` itself (callers write into it)."""
    out, _ = _algebra.transform(z, opts.temperature, opts.softcap)
    return out.clone() if out is z else out
