"""The loss's options, declared once: :class:`LossOptions` is the table.

Each field of :class:`LossOptions` is one option: its name, its type (the annotation), its
default, its check and a one-line doc, and where it is taken (:data:`ENTRY_POINTS`). Everything
else is derived from this one class: :func:`make_options` (the checks, in the table's order),
:func:`options_from` (the options among a public function's arguments, with a fast path for the
defaults), the PyTorch custom op's schema, the modules' attributes and ``extra_repr``, the
DTensor forwarding, the ``crossent explain`` flags and the public signatures themselves
(:func:`takes_options`: a loss function takes its options as ``**options``, and ``help()`` and
:func:`inspect.signature` show each of them with its default). A new option is one new field
here, its key in the typed dictionaries below (for type checkers and IDEs; checked against the
table when the modules are imported) and its mathematics.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, TypeVar

import numpy as np

REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "cpu", "triton")

# The public entry points that take loss options, by the short names the table uses:
# "core" is crossent.cross_entropy, cross_entropy_grad and cross_entropy_with_grad; "torch"
# crossent.torch.cross_entropy; "module" CrossEntropyLoss; "linear" linear_cross_entropy;
# "linear_module" LinearCrossEntropyLoss; "vocab_parallel" and "vocab_parallel_linear" the two
# functions of crossent.torch.distributed; "patch_model" crossent.torch.transformers.patch_model;
# "explain" crossent.explain.explain and the flags of `crossent explain`.
ENTRY_POINTS = (
    "core",
    "torch",
    "module",
    "linear",
    "linear_module",
    "vocab_parallel",
    "vocab_parallel_linear",
    "patch_model",
    "explain",
)
# where an option is taken unless its field says otherwise: every loss function and module
LOSS_ENTRY_POINTS = frozenset(ENTRY_POINTS[:7])


# ----------------------------------------------------------------------------------------------
# the checks: each returns the value to keep, or raises a TypeError/ValueError naming the option


def describe_value(value: Any) -> str:
    """A short description of a bad value for an error message."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if getattr(value, "ndim", 0) and hasattr(value, "dtype"):  # a torch tensor, a JAX array
        return f"array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _real(value: Any, name: str, expected: str) -> float:
    """``value`` as a float; a TypeError naming ``name`` when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {expected}, got {describe_value(value)}")
    return float(value)


def check_nonnegative(value: Any, name: str) -> float:
    """A finite number >= 0 (NaN and inf included in the one message)."""
    val = _real(value, name, "a real number")
    if not 0.0 <= val < math.inf:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return val


def check_positive(value: Any, name: str) -> float:
    val = _real(value, name, "a real number")
    if not 0.0 < val < math.inf:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return val


def check_unit_interval(value: Any, name: str) -> float:
    val = _real(value, name, "a real number")
    if not 0.0 <= val <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return val


def check_reduction(reduction: Any, name: str = "reduction") -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"{name}: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}"
        )
    return reduction


def check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {describe_value(value)}")
    return int(value)


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {describe_value(value)}")
    return value


def _check_softcap(value: Any, name: str) -> float | None:
    return None if value is None else check_positive(value, name)


def _check_num_items(value: Any, name: str) -> float | None:
    if value is None:
        return None
    # a 0-d or one-element array or tensor (transformers' Trainer passes either)
    if getattr(value, "shape", None) in ((), (1,)) and hasattr(value, "item"):
        value = value.item()
    k = _real(value, name, "a real number or None")
    if not 0.0 <= k < math.inf:
        raise ValueError(
            f"{name}: expected a finite number >= 0 (the non-ignored target weight of the "
            f"global batch), got {value!r}"
        )
    return k


def _check_backend(value: Any, name: str) -> str:
    if value not in BACKENDS:
        raise ValueError(f"{name}: expected 'auto', 'cpu' or 'triton', got {value!r}")
    return str(value)


# ----------------------------------------------------------------------------------------------
# the table


def _option(
    default: Any,
    check: Callable[[Any, str], Any],
    doc: str,
    *,
    where: frozenset[str] = LOSS_ENTRY_POINTS,
    per_call: bool = False,
    cli: tuple[str, str] | None = None,
    patch_model: bool = False,
) -> Any:
    """One row of the table, as a field of :class:`LossOptions`.

    ``where``: the loss entry points that take it (:data:`ENTRY_POINTS`); ``per_call``: the
    modules take it in ``forward``, not in the constructor; ``cli``: ``(metavar, help)`` of
    its flag of ``crossent explain`` (which then takes it); ``patch_model``: ``patch_model``
    takes it too.
    """
    where = where | ({"explain"} if cli else set()) | ({"patch_model"} if patch_model else set())
    meta = {"check": check, "doc": doc, "where": where, "per_call": per_call, "cli": cli}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """Every option of the loss, validated (build it with :func:`make_options`).

    ``softcap=None`` means no capping; ``num_items=None`` the batch's own ``'mean'``
    denominator. ``return_lse``, ``inplace`` and ``backend`` concern the PyTorch layer only
    (``backend='triton'`` forces the Triton kernels, in the interpreter on CPU tensors).
    """

    ignore_index: int = _option(
        -100, check_int, "index targets equal to it count for nothing (loss, gradient, 'mean')"
    )
    reduction: str = _option("mean", check_reduction, "'mean', 'sum' or 'none'")
    label_smoothing: float = _option(
        0.0, check_unit_interval, "ε: the target becomes (1-ε)·q + ε/k over the k finite classes",
        cli=("EPS", "the target becomes (1 - EPS)·q + EPS/C (0 <= EPS <= 1; default 0)"),
        patch_model=True,
    )  # fmt: skip
    z_loss: float = _option(
        0.0, check_nonnegative, "λ: adds λ·lse(x)² to each non-ignored position's loss",
        cli=("LAMBDA", "add LAMBDA·(log sum exp)² to the loss (PaLM's z-loss; default 0)"),
        patch_model=True,
    )  # fmt: skip
    softcap: float | None = _option(
        None, _check_softcap, "s: the logits become s·tanh(x/s) first (Gemma 2)",
        cli=("CAP", "soft-cap the scores to CAP·tanh(score/CAP) first (Gemma 2; CAP > 0)"),
    )  # fmt: skip
    temperature: float = _option(
        1.0, check_positive, "T: the logits are divided by T first (before soft-capping)",
        cli=("T", "divide the scores by T > 0 first (default 1)"), patch_model=True,
    )  # fmt: skip
    num_items: float | None = _option(
        None, _check_num_items, "the 'mean' denominator of the whole global batch", per_call=True
    )
    return_lse: bool = _option(
        False, check_bool, "also return each position's log-sum-exp", where=frozenset({"torch"})
    )
    inplace: bool = _option(
        False, check_bool, "write the gradient over the logits' buffer",
        where=frozenset({"torch", "module"}),
    )  # fmt: skip
    backend: str = _option(
        "auto", _check_backend, "'triton' forces the Triton kernels (internal)", where=frozenset()
    )

    @property
    def plain(self) -> bool:
        """No smoothing, z-loss, soft-capping, temperature or ``num_items``."""
        return (
            self.label_smoothing == 0.0
            and self.z_loss == 0.0
            and self.softcap is None
            and self.temperature == 1.0
            and self.num_items is None
        )


@dataclasses.dataclass(frozen=True)
class Option:
    """One row of the table, read from :class:`LossOptions`'s field ``name``."""

    name: str
    type: str  # the annotation as written: "int", "float | None", ...
    default: Any
    check: Callable[[Any, str], Any]
    doc: str
    where: frozenset[str]
    per_call: bool
    cli: tuple[str, str] | None


OPTIONS: tuple[Option, ...] = tuple(
    Option(f.name, str(f.type), f.default, **f.metadata) for f in dataclasses.fields(LossOptions)
)
NAMES = tuple(o.name for o in OPTIONS)
DEFAULT_OPTIONS = LossOptions()
_CHECKS = {o.name: (o.default, o.check) for o in OPTIONS}


def options_for(entry_point: str, *, per_call: bool | None = None) -> tuple[Option, ...]:
    """The options that ``entry_point`` takes, in the table's order (``per_call``: only those
    of a module's ``forward`` (True) or constructor (False))."""
    if entry_point not in ENTRY_POINTS:
        raise ValueError(f"entry_point: expected one of {ENTRY_POINTS}, got {entry_point!r}")
    return tuple(
        o
        for o in OPTIONS
        if entry_point in o.where and (per_call is None or o.per_call == per_call)
    )


# ----------------------------------------------------------------------------------------------
# the public signatures, derived from the table

_F = TypeVar("_F", bound=Callable[..., Any])


# The options a decorated function takes as ``**options``, for type checkers and IDEs
# (``**options: Unpack[LossKwargs]``, PEP 692): the table's names and types again, as they must
# be written statically; :func:`takes_options` compares them with the table at import.
class TransformKwargs(TypedDict, total=False):
    """What the modules' constructors take besides PyTorch's positional options."""

    z_loss: float
    softcap: float | None
    temperature: float


class ModuleKwargs(TransformKwargs, total=False):
    """:class:`crossent.torch.CrossEntropyLoss`'s."""

    inplace: bool


class TorchKwargs(ModuleKwargs, total=False):
    """:func:`crossent.torch.cross_entropy`'s besides PyTorch's positional options."""

    return_lse: bool
    num_items: float | None


class LossKwargs(TransformKwargs, total=False):
    """Every loss option: the NumPy, fused-head, vocabulary-parallel and JAX functions'."""

    ignore_index: int
    reduction: str
    label_smoothing: float
    num_items: float | None


_KWARGS = {k.__name__: k for k in (TransformKwargs, ModuleKwargs, TorchKwargs, LossKwargs)}


def _kwargs_problem(fn: Callable[..., Any], var: inspect.Parameter, added: list[Any]) -> str:
    """What is wrong with the typed dictionary of ``fn``'s ``**options`` ('' if nothing)."""
    hint = str(fn.__annotations__.get(var.name, ""))
    typed = _KWARGS.get(hint.removeprefix("Unpack[").removesuffix("]"))
    if typed is None:
        return f"expected **{var.name}: Unpack[one of {sorted(_KWARGS)}], got {hint!r}"
    got = {k: getattr(v, "__forward_arg__", v) for k, v in typed.__annotations__.items()}
    want = {p.name: p.annotation for p in added}
    return "" if got == want else f"{typed.__name__} has {got}, the table gives {want}"


def takes_options(entry_point: str, *, per_call: bool | None = None) -> Callable[[_F], _F]:
    """Decorate a public function whose loss options come as ``**options``: its signature
    (``__signature__``, what ``help()``, :func:`inspect.signature` and the documentation show)
    gets :func:`options_for` ``(entry_point, per_call)`` as keyword-only parameters with the
    table's defaults, in place of ``**options``.

    Options the function declares itself (PyTorch's positional ``ignore_index``, ``reduction``
    and ``label_smoothing``) are left where they are; their defaults must be the table's, or
    this raises when the module is imported. The function validates what it receives with
    :func:`options_from` ``(options, entry_point)``.
    """
    table = options_for(entry_point, per_call=per_call)

    def decorate(fn: _F) -> _F:
        sig = inspect.signature(fn)
        *own, var = sig.parameters.values()
        if var.kind is not inspect.Parameter.VAR_KEYWORD:
            raise TypeError(f"{fn.__qualname__}: expected **options last, got {var}")
        declared = {p.name: p.default for p in own}
        for o in table:
            if o.name in declared and declared[o.name] != o.default:
                raise TypeError(
                    f"{fn.__qualname__}: {o.name}={declared[o.name]!r}, the table's default is "
                    f"{o.default!r}"
                )
        added = [
            inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                              annotation=o.type)
            for o in table
            if o.name not in declared
        ]  # fmt: skip
        problem = _kwargs_problem(fn, var, added)
        if problem:
            raise TypeError(f"{fn.__qualname__}: {problem}")
        fn.__signature__ = sig.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return fn

    return decorate


def make_options(**options: Any) -> LossOptions:
    """Validate every option once: a ``TypeError``/``ValueError`` naming the argument."""
    if not options.keys() <= _CHECKS.keys():
        unknown = sorted(set(options) - set(NAMES))
        raise TypeError(f"make_options: unknown options {unknown}; expected some of {NAMES}")
    values = {
        name: check(options[name], name) if name in options else default
        for name, (default, check) in _CHECKS.items()
    }
    if values["num_items"] is not None and values["reduction"] != "mean":
        raise ValueError(
            f"num_items: expected None with reduction={values['reduction']!r} (num_items "
            f"replaces the 'mean' denominator), got {options['num_items']!r}"
        )
    return LossOptions(**values)


def options_from(
    options: Mapping[str, Any], entry_point: str, *, per_call: bool | None = None
) -> LossOptions:
    """:func:`make_options` of a public function's ``options`` (its ``**options``, with the
    options it declares itself), which ``entry_point`` must take (:func:`takes_options`;
    ``per_call`` as in :func:`options_for`).

    A name the entry point does not take is a ``TypeError``, as Python's for an unknown keyword
    argument, with the closest option's name. The defaults (checked by type too) return
    :data:`DEFAULT_OPTIONS` without a validation call, as the classifier calls this every step;
    the test is over the whole table, so that no option can be left out of it.
    """
    if not options:  # the common call: every default
        return DEFAULT_OPTIONS
    takes = _TAKES[entry_point, per_call]
    if not options.keys() <= takes:
        name = next(k for k in options if k not in takes)
        close = difflib.get_close_matches(name, sorted(takes), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(
            f"unexpected keyword argument {name!r}{hint}; the loss options here are "
            f"{', '.join(o.name for o in OPTIONS if o.name in takes)}"
        )
    for name, default, types in _DEFAULT_TYPES:
        value = options.get(name, default)
        if value is not default and (type(value) not in types or value != default):
            return make_options(**options)
    return DEFAULT_OPTIONS


# the names of options_for(entry_point, per_call=per_call), by (entry_point, per_call)
_TAKES = {
    (e, per_call): frozenset(o.name for o in options_for(e, per_call=per_call))
    for e in ENTRY_POINTS
    for per_call in (None, True, False)
}


# (name, default, the types a value equal to the default may have to count as the default:
# an int for a float, not a bool; None only as itself), for the fast path above
_DEFAULT_TYPES = tuple(
    (o.name, o.default, () if o.default is None else (float, int) if type(o.default) is float
     else (type(o.default),))
    for o in OPTIONS
)  # fmt: skip
