"""DTensor logits sharded on the class dimension: :func:`crossent.torch.cross_entropy` runs
:func:`~crossent.torch.distributed.vocab_parallel_cross_entropy` on the local shards."""

from __future__ import annotations

from typing import Any

from torch.distributed.tensor import DTensor, Replicate, Shard

from crossent._spec import OPTIONS, LossOptions, options_for
from crossent.torch.distributed._functional import vocab_parallel_cross_entropy


def _placement(t: DTensor) -> str:
    return f"placements {tuple(t.placements)} on a {t.device_mesh.ndim}-d mesh"


def _local(t: Any, name: str, sharded_ok: bool) -> Any:
    """A DTensor argument as this rank's tensor (replicated, or sharded like the logits)."""
    if not isinstance(t, DTensor):
        return t
    ok = all(isinstance(p, Replicate) for p in t.placements)
    if sharded_ok and not ok:
        ok = t.device_mesh.ndim == 1 and t.placements[0] == Shard(1)
    if not ok:
        expected = "replicated or sharded like input" if sharded_ok else "replicated"
        raise ValueError(f"{name}: expected a {expected} DTensor, got {_placement(t)}")
    return t.to_local()


def dtensor_cross_entropy(input: Any, target: Any, weight: Any, opts: LossOptions) -> DTensor:
    """The loss as a replicated DTensor; the gradient flows back to ``input``'s shards.

    The options that :func:`vocab_parallel_cross_entropy` takes are passed on; any other one
    (``return_lse``, ``inplace``) is refused unless it has its default."""
    class_dim = 1 if input.ndim > 1 else 0
    mesh = input.device_mesh
    p = input.placements[0]
    if mesh.ndim != 1 or not isinstance(p, Shard) or p.dim % input.ndim != class_dim:
        raise ValueError(
            f"input: expected a DTensor sharded on the class dimension (Shard({class_dim})) "
            f"over a one-dimensional device mesh, got {_placement(input)}"
        )
    passed = options_for("vocab_parallel")
    for o in OPTIONS:
        if o not in passed and getattr(opts, o.name) != o.default:
            got = getattr(opts, o.name)
            raise ValueError(f"{o.name}: not supported for DTensor input, got {got!r}")
    loss = vocab_parallel_cross_entropy(
        input.to_local(),
        _local(target, "target", sharded_ok=True),
        group=mesh.get_group(),
        weight=_local(weight, "weight", sharded_ok=False),
        **{o.name: getattr(opts, o.name) for o in passed},
    )
    return DTensor.from_local(loss, mesh, [Replicate()], run_check=False)
