r"""What every rank must pass alike, checked with the all-gather that finds the shards.

The vocabulary-parallel functions combine each row's statistics across ranks, so the ranks must
agree on everything but their columns: the rows and their layout, the global targets, the class
weights, the options, the dtype (and, for the fused head, the hidden width and the chunks).
Ranks that disagree would compute a loss for nothing (different targets) or wait on each other
forever (different chunk counts). Each rank therefore sends a fixed-length row of integers:
a flag for an error it found in its own arguments, then one entry per argument that must agree
(the value itself, a float's bits, or a hash of a tensor's contents); the column counts'
all-gather (:func:`~crossent.torch.distributed._shard.vocab_shard`) carries it, so the check
costs no extra collective, only the hashes (two integer products and sums over the target).
Every rank sees every row, so every rank raises the same error.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from crossent._spec import REDUCTIONS, LossOptions
from crossent.torch.distributed._shard import VocabShard, vocab_shard

# odd 64-bit multipliers (golden ratio and a SplitMix constant, as signed int64)
_MIX_A = -7046029254386353131
_MIX_B = -4658895280553007687

# the entries after the two counts and the error flag, in order: (argument, what, how shown)
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("check_ranks", "value", "int"),
    ("{x}", "dtype", "dtype"),
    ("{x}", "batch shape (every dimension but the classes')", "hash"),
    ("{layout}", "{layout_what}", "int"),
    ("chunk_size", "value", "int"),
    ("target", "kind (class indices or probabilities)", "kind"),
    ("target", "class indices (the global targets)", "hash"),
    ("target", "class indices (the global targets)", "hash"),
    ("{weight}", "class weights", "hash"),
    ("ignore_index", "value", "int"),
    ("reduction", "value", "reduction"),
    ("label_smoothing", "value", "float"),
    ("z_loss", "value", "float"),
    ("softcap", "value", "float"),
    ("temperature", "value", "float"),
    ("num_items", "value", "float"),
)
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _bits(value: float | None) -> int:
    """A float (None: NaN) as the int64 of its bits: equal floats, equal entries."""
    v = float("nan") if value is None else float(value)
    return int(struct.unpack("<q", struct.pack("<d", v))[0])


def _unbits(entry: int) -> float | None:
    v = float(struct.unpack("<d", struct.pack("<q", entry))[0])
    return None if v != v else v


def _hash_text(text: str) -> int:
    """A hash that is the same in every process (Python's ``hash`` of a str is not)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "little")


def _hash_ints(t: torch.Tensor) -> torch.Tensor:
    """``(2,)`` int64 hashes of a 1-D integer tensor, on its device (no host sync): the sums of
    ``t_i·(2i+1)`` and ``t_i·(A·i+B)``, modulo 2⁶⁴ (odd weights: any one change shows)."""
    t = t.reshape(-1).long()
    i = torch.arange(t.numel(), device=t.device, dtype=torch.int64)
    return torch.stack([(t * (2 * i + 1)).sum(), (t * (i * _MIX_A + _MIX_B)).sum()])


def fingerprint(
    x: torch.Tensor,
    batch: Sequence[int],
    layout: int,
    chunk_size: int | None,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    opts: LossOptions,
) -> torch.Tensor:
    """The entries of :data:`FIELDS` for this rank's (checked, flattened) arguments, int64 on
    ``x``'s device; ``layout``: the class dimension or the hidden width."""
    head = [
        1,
        _DTYPES.index(x.dtype) + 1,
        _hash_text(repr(tuple(batch))),
        layout,
        chunk_size or 0,
        2 if target.is_floating_point() else 1,
    ]
    tail = [
        opts.ignore_index,
        REDUCTIONS.index(opts.reduction),
        *map(_bits, (opts.label_smoothing, opts.z_loss, opts.softcap, opts.temperature)),
        _bits(opts.num_items),
    ]
    zero = torch.zeros(2, dtype=torch.int64, device=x.device)
    tgt = zero if target.is_floating_point() else _hash_ints(target)
    w = zero[:1]
    if isinstance(class_weight, torch.Tensor):  # the float64 bits of every weight
        bits = class_weight.detach().to(x.device, torch.float64).view(torch.int64)
        w = _hash_ints(bits)[:1]
    elif class_weight is not None:  # refused later, on every rank that has it
        w = zero[:1] - 1
    return torch.cat([x.new_tensor(head, dtype=torch.int64), tgt, w,
                      x.new_tensor(tail, dtype=torch.int64)])  # fmt: skip


def entries_if(check_ranks: Any, x: torch.Tensor, *args: Any) -> torch.Tensor:
    """:func:`fingerprint` ``(x, *args)`` with ``check_ranks``, else :func:`unchecked`."""
    if not isinstance(check_ranks, bool):
        raise TypeError(f"check_ranks: expected a bool, got {check_ranks!r}")
    return fingerprint(x, *args) if check_ranks else unchecked(x.device)


def unchecked(device: torch.device) -> torch.Tensor:
    """The entries of a rank that does not check (``check_ranks=False``)."""
    return torch.zeros(len(FIELDS), dtype=torch.int64, device=device)


def gather_device(tensor: Any, group: Any) -> torch.device:
    """Where the all-gather runs: the tensor's device, or (for a rank whose argument is not a
    tensor) the CPU, or the current CUDA device under NCCL."""
    if isinstance(tensor, torch.Tensor):
        return tensor.device
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def run_locally(prepare: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """``prepare()``, or its ``TypeError``/``ValueError``, kept until every rank has heard of
    it (raised at once, it would leave the other ranks waiting in the all-gather)."""
    try:
        return prepare(), None
    except (TypeError, ValueError) as err:
        return None, err


def _show(kind: str, entries: list[int]) -> str:
    if kind == "float":
        return str([_unbits(e) for e in entries])
    if kind == "dtype":
        return str([str(_DTYPES[e - 1]).removeprefix("torch.") if e else "?" for e in entries])
    if kind == "reduction":
        return str([REDUCTIONS[e] for e in entries])
    if kind == "kind":
        return str([("class indices", "probabilities")[e - 1] for e in entries])
    return str(entries)


def check_agreement(
    table: list[list[int]], errors: list[int], names: dict[str, str], local: str
) -> None:
    """Raise on every rank if a rank failed its own checks or the ranks disagree.

    ``table``: every rank's entries (:data:`FIELDS`); ``errors``: every rank's error flag;
    ``names``: the function's names for ``{x}``, ``{layout}``, ``{weight}``; ``local``: this
    rank's view of its batch shape, for the message.
    """
    bad = [r for r, e in enumerate(errors) if e]
    if bad:
        raise ValueError(
            f"{names['x']}: expected valid arguments on every rank, got an error on rank(s) "
            f"{bad} (raised there with its reason); every rank must be called alike"
        )
    columns = list(zip(*table, strict=True))
    checked = all(columns[0])
    for (arg, what, kind), col in zip(FIELDS, columns, strict=True):
        if len(set(col)) == 1 or (not checked and arg != "check_ranks"):
            continue
        arg, what = arg.format(**names), what.format(**names)
        if kind == "hash":
            diff = [r for r, e in enumerate(col) if e != col[0]]
            extra = f" (this rank's: {local})" if "shape" in what else ""
            got = f"different ones on rank(s) {diff} than on rank 0{extra}"
        else:
            got = f"{_show(kind, list(col))} by rank"
        raise ValueError(f"{arg}: expected the same {what} on every rank, got {got}")


@dataclass(frozen=True)
class Local:
    """One rank's arguments, checked and flattened, and its entries of :data:`FIELDS`."""

    x: torch.Tensor  # (M, V_r) logits, or the (M, D) input of the fused head
    target: torch.Tensor  # (M,) class indices or (M, V_r) probabilities
    batch: tuple[int, ...]
    opts: LossOptions
    n_local: int  # this rank's classes
    entries: torch.Tensor
    chunk: int = 0


def find_shard(
    local: Local | None, err: Exception | None, tensor: Any, group: Any, names: dict[str, str]
) -> tuple[VocabShard, Local]:
    """This rank's shard, once every rank has heard of every error and disagreement (from
    :func:`run_locally`: ``local``, or ``err``; ``tensor``: the argument giving the device).
    A rank that found an error in its own arguments raises it; the others say where it is."""
    if err is not None and not (dist.is_available() and dist.is_initialized()):
        raise err
    device = local.x.device if local is not None else gather_device(tensor, group)
    entries = local.entries if local is not None else unchecked(device)
    flag = torch.tensor([int(err is not None)], dtype=torch.int64, device=device)
    shape = str(local.batch) if local is not None else "?"

    def check(table: list[list[int]]) -> None:  # rows: [columns, rows, error, *entries]
        if any(r[2] for r in table) or len({r[1] for r in table}) == 1:  # else: rows differ
            check_agreement([r[3:] for r in table], [r[2] for r in table], names, shape)

    try:
        shard = vocab_shard(
            local.n_local if local is not None else 0, local.x.shape[0] if local is not None else 0,
            group, device, names["x"], extra=torch.cat([flag, entries]), check=check,
        )  # fmt: skip
    except ValueError:
        if err is not None:
            raise err from None  # this rank's own reason
        raise
    if local is None:  # not reached: the check raised on every rank
        raise err or RuntimeError("no arguments")
    return shard, local
