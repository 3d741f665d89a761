r"""Hugging Face ``transformers``: the fused head in any ``*ForCausalLM``, one call.

Usage (docs/transformers.md runs it on a small random Llama)::

    from crossent.torch.transformers import patch_model

    model = patch_model(model)  # any *ForCausalLM, in place
    model(input_ids, attention_mask=mask, labels=labels).loss.backward()  # no logits made

How it works, for every model on transformers' standard head (an ``nn.Linear`` output
embedding, the causal-LM loss ``self.loss_function``), without copying any family's
``forward``:

1. ``model.forward``, wrapped, notes whether ``labels`` were given.
2. With labels, the head (``model.get_output_embeddings()``) keeps its input, the last hidden
   states ``(B, T, D)``, and returns a *probe* instead of the logits: a ``(B, T, K)`` float64
   tensor of fixed values, ``K`` = 7. The model's own code then does to it what it does to the
   logits (Gemma's soft-capping, Cohere's and Granite's scaling, ``.float()``, ...).
3. The model calls ``self.loss_function(logits, labels, ...)``, replaced by ours: it reads the
   transform back from the probe, ``z ↦ c·tanh(a·z/c)`` (soft-cap ``c``, scale ``a``) or
   ``z ↦ a·z``, checks that this form reproduces every probe value, and computes
   :func:`crossent.torch.linear_cross_entropy` on the hidden states and the head's weight
   (and bias) with the labels shifted as transformers shifts them, ``temperature = 1/a``,
   ``softcap = c``, and ``num_items_in_batch`` as ``num_items`` (the summed loss divided by it:
   the exact token mean across gradient-accumulation steps and ranks, as ``Trainer`` intends).
   Whatever the model adds afterwards (a mixture of experts' router loss) is added as before.
4. The wrapper drops the probe from the output (``logits`` is ``None``), or puts the real
   logits there with ``keep_logits=True``.

Without labels nothing changes: generation runs the original head. A model whose forward
transforms its logits in a way this form cannot express, or that computes its loss without
``self.loss_function``, gets a ``RuntimeError`` rather than a wrong loss.
"""

from __future__ import annotations

import inspect
import math
import sys
from typing import Any

import torch
import torch.nn.functional as F

from crossent.torch._compile import eager_under_compile
from crossent.torch._linear import linear_cross_entropy
from crossent.torch._options import make_options, options_for

__all__ = ["patch_model", "unpatch_model"]

# The probe's values: a tiny one reads the scale a, a huge one the soft-cap c (tanh saturates),
# the others check that z ↦ c·tanh(a·z/c) is the whole story.
PROBE = (1e-8, -0.5, 1.0, 2.5, -7.0, 40.0, 1e8)
_TINY, _HUGE = 0, len(PROBE) - 1
# how closely the form must reproduce the probe, by the dtype the model left it in
_PROBE_RTOL = {torch.float64: 1e-9, torch.float32: 1e-5}
_ATTR = "_crossent_patch"
# Rows per chunk of the fused head on the CPU: a 256 MiB float32 logits buffer (512 rows at
# V = 128256), 4x linear_cross_entropy's float32 default. Each chunk also passes once over
# the (V, D) weight gradient (measured with a float32 accumulator, before it was kept in the
# weight's dtype); at D = 512, bfloat16, 4096 tokens the step took 7-9 s with 512 rows
# against 15-18 s with the default 130 (float32: 9.3 s against 11.9 s).
CPU_CHUNK_ELEMENTS = 1 << 26


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - the extra is installed in CI
        raise ImportError(
            "crossent.torch.transformers needs Hugging Face transformers: "
            "pip install 'crossent[hf]' (or pip install transformers)"
        ) from err
    return transformers


class _Patch:
    """The patched ``model.forward``, and what it shares with the head and the loss function.

    ``model.forward`` is replaced (not hooked) so that callers of ``model.forward(...)`` itself,
    such as PEFT's tuners, go through it too; ``__wrapped__`` keeps its signature visible.
    """

    def __init__(self, model: Any, head: torch.nn.Linear, options: dict[str, Any]) -> None:
        self.model, self.linear, self.options = model, head, options
        self.keep_logits: bool = options.pop("keep_logits")
        params = list(inspect.signature(type(model).forward).parameters)[1:]  # without self
        self.labels_position = params.index("labels")
        self.__wrapped__ = model.forward
        self.forward_before = model.__dict__.get("forward")  # accelerate may have set one
        self.head_forward = head.__dict__.get("forward")
        self.loss_function_before = model.__dict__.get("_loss_function")
        self._reset(False)

    def _reset(self, active: bool) -> None:
        self.active = active
        self.hidden: torch.Tensor | None = None  # the head's input, while a loss is due
        self.logits_seen: torch.Tensor | None = None  # what the loss function got as logits
        self.transform: tuple[float, float | None] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        labels = kwargs.get("labels")
        if labels is None and len(args) > self.labels_position:
            labels = args[self.labels_position]
        self._reset(labels is not None)
        try:
            output = self.__wrapped__(*args, **kwargs)
        except Exception as err:
            probe_used = self.hidden is not None and self.logits_seen is None
            self._reset(False)
            if probe_used:  # the error is likely the probe's: say so, with the original
                raise RuntimeError(
                    f"crossent.torch.transformers: {type(self.model).__name__} failed after "
                    f"its head returned crossent's stand-in for the logits (shape (..., "
                    f"{len(PROBE)})) and before self.loss_function: its forward uses the "
                    "logits in a way the fused head cannot replace; "
                    "call crossent.torch.transformers.unpatch_model(model)"
                ) from err
            raise
        try:
            return self._finish(output)
        finally:
            self._reset(False)

    def head_forward_patched(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return self._original_head(hidden)
        self.hidden = hidden
        probe = torch.tensor(PROBE, dtype=torch.float64, device=hidden.device)
        return probe.expand(*hidden.shape[:-1], len(PROBE))

    def _original_head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head_forward is not None:
            return self.head_forward(hidden)
        return torch.nn.Linear.forward(self.linear, hidden)

    def _finish(self, output: Any) -> Any:
        """The output without the probe (``logits`` None), or with the real logits."""
        seen, hidden, transform = self.logits_seen, self.hidden, self.transform
        if not self.active or output is None:
            return output
        if seen is None:
            raise RuntimeError(
                f"crossent.torch.transformers: {type(self.model).__name__} computed its loss "
                "without self.loss_function, so the fused head cannot be used; "
                "call crossent.torch.transformers.unpatch_model(model)"
            )
        logits = None
        if self.keep_logits and hidden is not None and transform is not None:
            with torch.no_grad():
                logits = _apply_transform(self._original_head(hidden), *transform)
                logits = logits.to(seen.dtype if seen.dtype != torch.float64 else hidden.dtype)
        if isinstance(output, tuple):
            items = [logits if item is seen else item for item in output]
            return tuple(item for item in items if item is not None)
        fields = {k: (logits if v is seen else v) for k, v in output.items()}
        return type(output)(**fields)

    # -- the loss ------------------------------------------------------------------------
    def loss_function(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        vocab_size: int | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        ignore_index: int = -100,
        shift_labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        hidden = self.hidden
        if hidden is None:
            raise RuntimeError(
                "crossent.torch.transformers: the loss function was called outside the "
                f"patched forward of {type(self.model).__name__} (the head saw no labels)"
            )
        self.logits_seen = logits
        return _fused_loss(self, hidden, logits, labels, vocab_size, num_items_in_batch,
                           ignore_index, shift_labels)  # fmt: skip


@eager_under_compile
def _fused_loss(
    patch: _Patch,
    hidden: torch.Tensor,
    probe: torch.Tensor,
    labels: torch.Tensor,
    vocab_size: int | None,
    num_items_in_batch: torch.Tensor | int | None,
    ignore_index: int,
    shift_labels: torch.Tensor | None,
) -> torch.Tensor:
    """The causal-LM loss of transformers' ``ForCausalLMLoss``, on the fused head."""
    name = type(patch.model).__name__
    scale, cap = _read_transform(probe, name)
    patch.transform = (scale, cap)
    weight: torch.Tensor = patch.linear.weight
    bias: torch.Tensor | None = patch.linear.bias
    if vocab_size is not None and vocab_size != weight.shape[0]:
        raise RuntimeError(
            f"crossent.torch.transformers: {name}'s head has {weight.shape[0]} rows but its "
            f"loss is over vocab_size={vocab_size}; it cannot be fused"
        )
    if shift_labels is None:  # position t predicts label t + 1; the last predicts nothing
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    hidden = hidden.to(weight.device)  # a model split over devices (device_map)
    shift_labels = shift_labels.to(weight.device)
    if tuple(shift_labels.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"labels: expected shape {tuple(hidden.shape[:-1])} (one per position whose "
            f"logits the model computes; logits_to_keep must be 0), got {tuple(labels.shape)}"
        )
    opts = dict(patch.options)
    temperature = opts.pop("temperature") / scale
    device = weight.device.type
    if torch.is_autocast_enabled(device):  # the head runs in the autocast dtype, as F.linear
        dtype = torch.get_autocast_dtype(device)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    chunk = None if device != "cpu" else max(1, CPU_CHUNK_ELEMENTS // weight.shape[0])
    # num_items_in_batch: the summed loss / it, scaled inside the fused head (in float32)
    n = None if num_items_in_batch is None else float(num_items_in_batch)
    with torch.autocast(device, enabled=False):
        loss = linear_cross_entropy(
            hidden, weight, shift_labels, bias, ignore_index=ignore_index, num_items=n,
            softcap=cap, temperature=temperature, chunk_size=chunk, **opts,
        )  # fmt: skip
    return loss.float()  # as transformers' loss, computed on float32 logits


def _read_transform(probe: torch.Tensor, name: str) -> tuple[float, float | None]:
    """``(a, c)`` with ``probe == c·tanh(a·PROBE/c)`` (``c`` None: ``a·PROBE``), or refuse."""
    if probe.shape[-1] != len(PROBE):
        raise RuntimeError(
            f"crossent.torch.transformers: {name} reshapes its logits before its loss "
            f"(last dimension {probe.shape[-1]}, expected {len(PROBE)}); it cannot be fused"
        )
    q = probe.detach().reshape(-1, len(PROBE)).double()
    if q.shape[0] == 0:
        return 1.0, None
    first = q[0].tolist()
    scale = first[_TINY] / PROBE[_TINY]
    huge = first[_HUGE]
    cap = None if math.isclose(huge, scale * PROBE[_HUGE], rel_tol=1e-6) else huge
    p = torch.tensor(PROBE, dtype=torch.float64, device=q.device)
    expected = scale * p if cap is None else cap * torch.tanh(scale * p / cap)
    rtol = _PROBE_RTOL.get(probe.dtype, 1e-2)
    err = float(((q - expected).abs() / expected.abs().clamp_min(1.0)).max())
    ok = math.isfinite(scale) and scale > 0 and (cap is None or 0 < cap < math.inf)
    if not ok or not err <= rtol:
        raise RuntimeError(
            f"crossent.torch.transformers: {name} transforms its logits before its loss in a "
            "way the fused head cannot reproduce (supported: a scale and one soft-cap, "
            f"z -> c*tanh(a*z/c)); the values {list(PROBE)} became {first}"
        )
    return scale, cap


def _apply_transform(z: torch.Tensor, scale: float, cap: float | None) -> torch.Tensor:
    z = z.float() * scale
    return z if cap is None else torch.tanh(z / cap) * cap


def patch_model(
    model: Any,
    *,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    keep_logits: bool = False,
) -> Any:
    """Make ``model(..., labels=labels).loss`` the fused head's loss; returns ``model``.

    Parameters
    ----------
    model : transformers.PreTrainedModel, or a PEFT model wrapping one
        A decoder-only causal language model on transformers' standard head: an
        ``nn.Linear`` output embedding (tied or not, with or without bias) and the causal-LM
        loss (``model.loss_function`` is transformers' ``ForCausalLMLoss``, called by its
        forward). Encoder-decoder models (T5, BART) are refused: they compute their loss
        themselves, on labels aligned with the decoder's positions. A PEFT model
        (``get_peft_model``, LoRA...) is patched through its base model; an adapter on the
        output layer itself is refused.
    z_loss, label_smoothing : float, default 0.0
        As :func:`crossent.torch.linear_cross_entropy` (0: transformers' loss exactly).
    temperature : float > 0, default 1.0
        Divides the logits before the model's own soft-cap (crossent's order).
    keep_logits : bool, default False
        With labels, ``outputs.logits`` is ``None`` unless this is true; then the logits are
        computed once more, without a gradient (their memory is paid again).

    Returns
    -------
    model : transformers.PreTrainedModel
        The same model (or PEFT model), patched in place (three instance attributes of the
        transformers model: its ``forward``, its ``loss_function`` and its head's
        ``forward``; see :func:`unpatch_model`). Patching again replaces the options.

    Raises
    ------
    TypeError, ValueError
        A model this cannot patch (named, with the reason), or a bad option.
    """
    args = locals()
    options = {o.name: args[o.name] for o in options_for("patch_model")}
    transformers = _require_transformers()
    make_options(**options)
    if not isinstance(keep_logits, bool):
        raise TypeError(f"keep_logits: expected a bool, got {keep_logits!r}")
    base = _transformers_model(model, transformers)
    unpatch_model(base)
    head = _check_patchable(base)
    patch = _Patch(base, head, {**options, "keep_logits": keep_logits})
    try:
        base.loss_function = patch.loss_function
    except AttributeError as err:  # transformers < 4.48: a read-only property
        raise TypeError(
            "model: its loss_function cannot be replaced in transformers "
            f"{transformers.__version__}; crossent.torch.transformers needs a newer one"
        ) from err
    head.forward = patch.head_forward_patched  # type: ignore[method-assign, assignment]
    base.forward = patch
    object.__setattr__(base, _ATTR, patch)
    return model


def _transformers_model(model: Any, transformers: Any) -> Any:
    """The transformers model itself: ``model``, or the base model of a PEFT wrapper (PEFT's
    forward calls the base model's ``forward``, so patching it patches the wrapper)."""
    base = _peft_base(model)
    if not isinstance(base, transformers.PreTrainedModel):
        what = type(model).__name__
        if base is not model:
            what += f" wrapping {type(base).__name__}"
        raise TypeError(
            f"model: expected a transformers PreTrainedModel or a PEFT model wrapping one, "
            f"got {what}"
        )
    return base


def _peft_base(model: Any) -> Any:
    """The model a PEFT wrapper wraps (``model`` itself if it is none)."""
    peft = sys.modules.get("peft")  # a PEFT model exists only once peft is imported
    if peft is not None and isinstance(model, peft.PeftModel):
        return model.get_base_model()
    if peft is not None and isinstance(model, peft.tuners.tuners_utils.BaseTuner):
        return model.model  # a PeftModel's .base_model (LoraModel, ...)
    return model


def _check_patchable(model: Any) -> torch.nn.Linear:
    """The head of a model this can patch, or a ``ValueError`` saying why not."""
    name = type(model).__name__
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError(
            f"model: expected a decoder-only causal language model (*ForCausalLM), got {name}, "
            "an encoder-decoder model: it computes its loss on the decoder's logits itself, "
            "with labels aligned to the decoder's positions, not with transformers' causal-LM "
            "loss (ForCausalLMLoss), which is what the fused head replaces"
        )
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        hint = ""
        if type(head).__module__.split(".")[0] == "peft":
            hint = " (a PEFT adapter on the output layer: leave lm_head out of target_modules)"
        raise ValueError(
            f"model: expected a causal LM whose output embedding is a torch.nn.Linear, "
            f"got {name} with {type(head).__name__}{hint}"
        )
    forward = model.__dict__.get("forward")
    if _module_of(forward).split(".")[0] == "trl":
        raise ValueError(
            f"model: expected a model whose forward TRL has not replaced, got {name} with TRL's "
            "fused head (a TRL trainer installs it when built); patch the model before building "
            "the trainer: the trainer then trains with its own head, and crossent's serves "
            "every other call with labels"
        )
    from transformers.loss.loss_utils import ForCausalLMLoss

    loss_fn = model.loss_function
    if loss_fn is not ForCausalLMLoss:
        raise ValueError(
            f"model: expected a causal LM whose loss is transformers' ForCausalLMLoss, got "
            f"{name} with {getattr(loss_fn, '__name__', loss_fn)!r}"
        )
    if "labels" not in inspect.signature(type(model).forward).parameters:
        raise ValueError(f"model: expected a forward that takes labels, got {name}")
    try:
        source: str | None = inspect.getsource(type(model).forward)
    except (OSError, TypeError):  # no source: the check at each call remains
        source = None
    if source is not None and "self.loss_function" not in source:
        raise ValueError(
            f"model: expected a forward that calls self.loss_function, got {name}, which "
            "computes its loss without it"
        )
    return head


def _module_of(fn: Any) -> str:
    """The module that defined a function or bound method (``''`` if unknown)."""
    fn = getattr(fn, "__func__", fn)
    return str(getattr(fn, "__globals__", {}).get("__name__", ""))


def unpatch_model(model: Any) -> Any:
    """Undo :func:`patch_model` (nothing happens to a model that is not patched).

    Raises
    ------
    TypeError
        ``model`` is not a ``torch.nn.Module`` (a transformers or PEFT model).
    RuntimeError
        The model's ``forward`` was replaced after it was patched (by a TRL trainer): undoing
        the patch would remove that one too.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            "model: expected a transformers PreTrainedModel or a PEFT model wrapping one, got "
            f"{type(model).__name__}"
        )
    wrapper, model = model, _peft_base(model)
    patch: _Patch | None = model.__dict__.get(_ATTR)
    if patch is None:
        return wrapper
    if model.__dict__.get("forward") is not patch:
        raise RuntimeError(
            f"model: {type(model).__name__}'s forward was replaced after patch_model (by "
            f"{_module_of(model.__dict__.get('forward')) or 'another library'}); unpatching "
            "would remove that too"
        )
    if patch.forward_before is not None:
        model.forward = patch.forward_before
    else:
        del model.forward
    if patch.head_forward is not None:
        patch.linear.forward = patch.head_forward
    else:
        del patch.linear.forward
    if patch.loss_function_before is not None:
        model._loss_function = patch.loss_function_before
    else:
        del model._loss_function
    del model.__dict__[_ATTR]
    return wrapper
