"""The loss options, validated once at the public boundary and packed for ``Function.apply``."""

from __future__ import annotations

import importlib.util
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

REDUCTIONS = ("mean", "sum", "none")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class LossOptions:
    """Every option of the loss, resolved (``softcap=None`` means no capping)."""

    ignore_index: int = -100
    reduction: str = "mean"
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None
    temperature: float = 1.0
    return_lse: bool = False
    inplace: bool = False
    backend: str = "auto"  # "auto", "cpu" or "triton" (tests force "triton" on CPU tensors)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    val = float(value)
    if math.isnan(val) or math.isinf(val):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return val


def make_options(
    *,
    ignore_index: Any = -100,
    reduction: Any = "mean",
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    softcap: Any = None,
    temperature: Any = 1.0,
    return_lse: Any = False,
    inplace: Any = False,
    backend: str = "auto",
) -> LossOptions:
    """Validate the options: ``TypeError``/``ValueError`` naming the argument."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index: expected an int, got {ignore_index!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}"
        )
    eps = _real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing: expected a number in [0, 1], got {label_smoothing!r}")
    zl = _real(z_loss, "z_loss")
    if zl < 0.0:
        raise ValueError(f"z_loss: expected a number >= 0, got {z_loss!r}")
    cap = None
    if softcap is not None:
        cap = _real(softcap, "softcap")
        if cap <= 0.0:
            raise ValueError(f"softcap: expected a number > 0 or None, got {softcap!r}")
    temp = _real(temperature, "temperature")
    if temp <= 0.0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    for name, flag in (("return_lse", return_lse), ("inplace", inplace)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected a bool, got {flag!r}")
    if backend not in ("auto", "cpu", "triton"):
        raise ValueError(f"backend: expected 'auto', 'cpu' or 'triton', got {backend!r}")
    return LossOptions(
        ignore_index=int(ignore_index),
        reduction=str(reduction),
        label_smoothing=eps,
        z_loss=zl,
        softcap=cap,
        temperature=temp,
        return_lse=return_lse,
        inplace=inplace,
        backend=backend,
    )


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
    if weight is None:
        return None
    check_float_tensor(weight, name)
    if weight.shape != (n_classes,):
        raise ValueError(
            f"{name}: expected shape ({n_classes},) (one per class), got {tuple(weight.shape)}"
        )
    if weight.device != device:
        raise ValueError(f"{name}: expected a tensor on {device}, got one on {weight.device}")
    if weight.requires_grad and torch.is_grad_enabled():  # never a silently missing gradient
        raise ValueError(
            f"{name}: class weights are constants here (no gradient is computed for them), "
            f"got a tensor that requires grad; pass {name}.detach()"
        )
    return weight


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
