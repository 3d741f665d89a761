"""A language-model head with its vocabulary split over ranks, trained with gradient accumulation.

Run with two processes (CPU and gloo here; on GPUs the same script uses NCCL):

    torchrun --nproc-per-node 2 examples/tensor_parallel_head.py --steps 5

A tiny model (embedding -> tanh layer -> output head over V tokens) whose head weight is split
by rows: rank r holds its slice of the vocabulary. Each optimizer step accumulates gradients
over micro-batches of different lengths and padding; every micro-batch's loss is its summed
loss over ``num_items``, the non-ignored tokens of the whole step, so the accumulated gradient
is that of the step's token mean. Rank 0 then trains the same model in one process with the
whole head and checks that the losses agree.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.distributed as dist

from crossent.torch import linear_cross_entropy
from crossent.torch.distributed import global_num_items, vocab_parallel_linear_cross_entropy

V, D = 1000, 32
IGNORE = -100


def make_params(device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The whole model, from a fixed seed: every rank builds the same one."""
    g = torch.Generator().manual_seed(0)
    return {
        "emb": torch.randn(V, D, generator=g, dtype=dtype) * 0.5,
        "w1": torch.randn(D, D, generator=g, dtype=dtype) / D**0.5,
        "head": torch.randn(V, D, generator=g, dtype=dtype) / D**0.5,
    }


def micro_batches(step: int, n_micro: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, targets) of different lengths, some padding ignored; the target of token t is
    ``(7·t + 3) mod V``, a rule the model can learn."""
    g = torch.Generator().manual_seed(100 + step)
    out = []
    for m in range(n_micro):
        n = 16 + 24 * m  # micro-batches of 16, 40, 64 ... tokens
        tokens = torch.randint(0, V // 10, (n,), generator=g)
        target = (7 * tokens + 3) % V
        target[n - (n // (3 + m)) :] = IGNORE  # padding at the end: a different share each
        out.append((tokens, target))
    return out


def hidden(p: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    return torch.tanh(p["emb"][tokens] @ p["w1"])  # (n, D)


def train(args: argparse.Namespace, rows: slice | None, device: torch.device) -> list[float]:
    """Losses per step; ``rows``: this rank's rows of the head (None: one process, all of it)."""
    dtype = getattr(torch, args.dtype)
    p = make_params(device, dtype)
    if rows is not None:
        p["head"] = p["head"][rows].clone()  # this rank's slice of the vocabulary
    p = {k: v.to(device).requires_grad_() for k, v in p.items()}
    opt = torch.optim.SGD(p.values(), lr=args.lr)
    losses = []
    for step in range(args.steps):
        batches = [(x.to(device), y.to(device)) for x, y in micro_batches(step, args.micro)]
        # the step's denominator; with data-parallel ranks too, pass their group (and multiply
        # each loss by their number when DDP averages the gradients)
        num_items = global_num_items(*(y for _, y in batches))
        opt.zero_grad()
        total = 0.0
        for tokens, target in batches:
            h = hidden(p, tokens)
            if rows is None:  # the whole head, in one process
                loss = linear_cross_entropy(h, p["head"], target, num_items=num_items)
            else:
                loss = vocab_parallel_linear_cross_entropy(
                    h, p["head"], target, num_items=num_items
                )
            loss.backward()  # the gradient of h is summed over ranks inside the head
            total += loss.item()
        opt.step()
        losses.append(total)
    return losses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--micro", type=int, default=3, help="micro-batches per step")
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    # uneven slices: rank r holds rows [bounds[r], bounds[r + 1]) of the head
    bounds = [V * r // world + (r > 0) * 7 for r in range(world)] + [V]
    parallel = train(args, slice(bounds[rank], bounds[rank + 1]), device)
    ok = True
    if rank == 0:
        single = train(args, None, device)
        rtol = 1e-9 if args.dtype == "float64" else 1e-4
        for step, (a, b) in enumerate(zip(parallel, single, strict=True)):
            print(f"step {step}: loss {a:.6f} over {world} ranks, {b:.6f} in one process")
        worst = max(abs(a - b) / abs(b) for a, b in zip(parallel, single, strict=True))
        ok = worst <= rtol
        verdict = "match" if ok else "DO NOT match"
        print(f"losses {verdict} the single-process run (largest relative difference {worst:.1e})")
    flag = torch.tensor([float(ok)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    dist.destroy_process_group()
    return 0 if flag.item() == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
