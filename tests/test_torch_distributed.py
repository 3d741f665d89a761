"""crossent.torch.distributed against the single-process functions, on spawned gloo groups.

Each world size spawns one process group and runs the whole table of cases inside it (a spawn
costs seconds; a case milliseconds). Shards are uneven, columns are split as in
``BOUNDS``; every case compares the loss and every gradient with
``crossent.torch.cross_entropy`` / ``linear_cross_entropy`` on the gathered tensors.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

from crossent.torch import cross_entropy, linear_cross_entropy  # noqa: E402
from crossent.torch.distributed import (  # noqa: E402
    global_num_items,
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="needs gloo")

ROOT = Path(__file__).resolve().parents[1]
NINF = float("-inf")
N, V, D = 10, 11, 5
BOUNDS = {2: [0, 4, 11], 3: [0, 3, 4, 11]}  # uneven: 4 + 7 and 3 + 1 + 7 columns
TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (2e-5, 2e-6),
    torch.bfloat16: (1.6e-2, 1e-2),  # both sides compute in float32 and round once
}

LOGIT_CASES = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": True, "label_smoothing": 0.1},
    {"z_loss": 1e-3, "softcap": 4.0, "temperature": 0.7},
    {
        "weight": True,
        "label_smoothing": 0.2,
        "z_loss": 1e-2,
        "softcap": 3.0,
        "temperature": 1.5,
        "ignore_index": 2,
        "reduction": "none",
    },
    {"mask": True},  # rank 1's whole shard -inf in some rows
    {"mask": True, "label_smoothing": 0.3, "weight": True, "softcap": 5.0},
    {"mask": True, "label_smoothing": 0.1, "reduction": "none", "z_loss": 1e-3},
    {"ignore_all": True},  # every target ignored: loss 0, gradient 0
    {"ignore_all": True, "label_smoothing": 0.1, "z_loss": 1e-2},
    {"num_items": 31.5, "weight": True},
    {"weight": True, "z_loss": 1e-2},  # the z-term's mean is over positions, not Σ w[y]
    {"prob": True},
    {"prob": True, "label_smoothing": 0.1, "weight": True, "reduction": "sum"},
    {"prob": True, "mask": True, "label_smoothing": 0.2, "z_loss": 1e-3},
    {"prob": True, "mask": True, "reduction": "none", "temperature": 2.0},
    {"kdim": True, "label_smoothing": 0.1},  # (N, V, 3) logits, class_dim=1
    {"megatron": True, "label_smoothing": 0.1, "reduction": "none"},  # [s, b, V]: class_dim=-1
    {"megatron": True, "prob": True, "z_loss": 1e-3},
    {"num_items": 3.0},  # below this batch's count (9): the sum / 3, as transformers does
    {"big": 400.0, "label_smoothing": 0.1, "z_loss": 1e-4},  # logits in the hundreds: shifted
    {"big": 25.0, "temperature": 0.3},  # exp's safe range ends inside the batch
]

LINEAR_CASES = [
    {},
    {"bias": True, "reduction": "sum", "chunk_size": 3},
    {"bias": True, "reduction": "none", "chunk_size": 4},
    {
        "class_weight": True,
        "label_smoothing": 0.1,
        "z_loss": 1e-3,
        "softcap": 3.0,
        "temperature": 0.8,
        "chunk_size": 1,
    },
    {"prob": True, "bias": True, "label_smoothing": 0.1},
    {"num_items": 25.0, "bias": True},
    {"class_weight": True, "z_loss": 1e-2, "reduction": "mean"},
]


def _data(case, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (N, V, 3) if case.get("kdim") else (N, V)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * case.get("big", 3)).to(dtype)
    bshape = (N, 3) if case.get("kdim") else (N,)
    y = torch.randint(0, V, bshape, generator=g)
    ii = case.get("ignore_index", -100)
    y.view(-1)[1] = ii
    if case.get("mask"):
        x[:4, 4:] = NINF  # all columns of rank 1 (world 2) / ranks 2 (world 3)
        x[5, :] = NINF  # an ignored row of all -inf
        y[5] = ii
        y[:4] = torch.tensor([0, 2, 3, 1])
    if case.get("ignore_all"):
        y[:] = ii
    if case.get("prob"):
        q = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1)
        if case.get("mask"):
            q = torch.where(x.isneginf(), 0.0, q)
            q[5, 0] = 1.0  # the all -inf row must be a target row too: give it one finite logit
            x[5, 0] = 0.0
            q = q / q.sum(1, keepdim=True)
        y = q.to(dtype)
    w = torch.rand(V, generator=g, dtype=torch.float64).to(dtype) + 0.5
    return x, y, w


def _split(t, bounds, rank, dim=1):
    return t.narrow(dim, bounds[rank], bounds[rank + 1] - bounds[rank])


def _options(case, keys=("label_smoothing", "z_loss", "softcap", "temperature", "reduction")):
    opts = {k: case[k] for k in keys if k in case}
    if "ignore_index" in case:
        opts["ignore_index"] = case["ignore_index"]
    return opts


def _close(got, want, dtype, what):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def _check_logits(case, dtype, rank, bounds):
    x, y, w = _data(case, dtype)
    opts = _options(case)
    weight = w if case.get("weight") else None
    full = x.clone().requires_grad_()
    prob = y.is_floating_point()
    yf = y.clone().requires_grad_() if prob else y
    ref = cross_entropy(full, yf, weight, **opts)
    if "num_items" in case:  # the reference: the sum over the given count
        ref = cross_entropy(full, yf, weight, reduction="sum", **opts) / case["num_items"]
        opts["num_items"] = case["num_items"]
    cdim, mine = 1, lambda t: _split(t, bounds, rank)
    if case.get("kdim"):
        opts["class_dim"] = 1
    if case.get("megatron"):  # Megatron's [s, b, V_r] of the same rows: the vocabulary last
        opts["class_dim"] = cdim = -1
        mine = lambda t: _split(t, bounds, rank).reshape(2, N // 2, -1)  # noqa: E731
        if case.get("reduction") == "none":
            ref = ref.reshape(2, N // 2)
    shard = mine(x).clone().requires_grad_()
    ys = (
        mine(y).clone().requires_grad_()
        if prob
        else y.reshape(shard.shape[:-1])
        if cdim == -1
        else y
    )
    got = vocab_parallel_cross_entropy(shard, ys, weight=weight, **opts)
    _close(got, ref, dtype, "loss")
    gout = torch.rand(ref.shape, generator=torch.Generator().manual_seed(3), dtype=dtype) + 0.5
    want = torch.autograd.grad(ref, [full, yf] if prob else [full], gout)
    have = torch.autograd.grad(got, [shard, ys] if prob else [shard], gout)
    _close(have[0], mine(want[0]), dtype, "logits gradient")
    assert torch.isfinite(have[0]).all()
    if prob:
        _close(have[1], mine(want[1]), dtype, "target gradient")


def _check_linear(case, dtype, rank, bounds):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(N, D, generator=g, dtype=torch.float64).to(dtype)
    wt = (torch.randn(V, D, generator=g, dtype=torch.float64) * 0.8).to(dtype)
    b = torch.randn(V, generator=g, dtype=torch.float64).to(dtype) if case.get("bias") else None
    _, y, cw = _data({"prob": case.get("prob")}, dtype)
    cw = cw if case.get("class_weight") else None
    opts = _options(case, ("label_smoothing", "z_loss", "softcap", "temperature", "reduction",
                           "chunk_size"))  # fmt: skip
    leaves = [t.clone().requires_grad_() for t in (x, wt) + ((b,) if b is not None else ())]
    ref = linear_cross_entropy(*leaves[:2], y, leaves[2] if b is not None else None,
                               class_weight=cw, **opts)  # fmt: skip
    if "num_items" in case:
        opts["reduction"] = "sum"
        ref = linear_cross_entropy(*leaves[:2], y, leaves[2] if b is not None else None,
                                   class_weight=cw, **opts) / case["num_items"]  # fmt: skip
        opts["reduction"], opts["num_items"] = "mean", case["num_items"]
    mine = [x.clone().requires_grad_(), _split(wt, bounds, rank, 0).clone().requires_grad_()]
    if b is not None:
        mine.append(_split(b, bounds, rank, 0).clone().requires_grad_())
    ys = _split(y, bounds, rank) if y.is_floating_point() else y
    got = vocab_parallel_linear_cross_entropy(mine[0], mine[1], ys, mine[2] if b is not None
                                              else None, class_weight=cw, **opts)  # fmt: skip
    _close(got, ref, dtype, "loss")
    gout = torch.rand(ref.shape, generator=torch.Generator().manual_seed(3), dtype=dtype) + 0.5
    want = torch.autograd.grad(ref, leaves, gout)
    have = torch.autograd.grad(got, mine, gout)
    _close(have[0], want[0], dtype, "input gradient")
    for name, h, w_ in zip(("weight", "bias"), have[1:], want[1:], strict=False):
        _close(h, _split(w_, bounds, rank, 0), dtype, f"{name} gradient")


def _check_dtensor(world, rank):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor
    from torch.distributed.tensor.parallel import loss_parallel

    mesh = init_device_mesh("cpu", (world,))
    x, y, w = _data({}, torch.float64)
    for opts in ({}, {"weight": w, "label_smoothing": 0.1, "z_loss": 1e-3}, {"num_items": 20.0}):
        full = x.clone().requires_grad_()
        ref = cross_entropy(full, y, **opts)
        ref.backward()
        dx = distribute_tensor(x, mesh, [Shard(1)]).requires_grad_()
        loss = cross_entropy(dx, y, **opts)
        assert isinstance(loss, DTensor)
        loss.backward()
        _close(loss.full_tensor(), ref.detach(), torch.float64, "DTensor loss")
        _close(dx.grad.full_tensor(), full.grad, torch.float64, "DTensor gradient")
    with loss_parallel():  # PyTorch's own vocab-parallel loss agrees
        theirs = torch.nn.functional.cross_entropy(distribute_tensor(x, mesh, [Shard(1)]), y)
    _close(theirs.full_tensor(), cross_entropy(x, y), torch.float64, "loss_parallel")
    with pytest.raises(ValueError, match=r"input: expected a DTensor sharded on the class"):
        cross_entropy(distribute_tensor(x, mesh, [Shard(0)]), y)


def _check_errors(world, rank, bounds):
    """Bad input seen by one rank only raises the same error on every rank (no hang)."""
    x, y, _ = _data({}, torch.float64)
    shard = _split(x, bounds, rank).clone()
    bad = shard.clone()
    if rank == world - 1:
        bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"logits: expected finite values or -inf .*got NaN"):
        vocab_parallel_cross_entropy(bad, y)
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 10\]"):
        vocab_parallel_cross_entropy(shard, torch.where(y == 3, 11, y))
    row = shard.clone()
    row[0] = NINF
    with pytest.raises(ValueError, match="at least one finite logit in every non-ignored row"):
        vocab_parallel_cross_entropy(row, y)
    q = torch.softmax(shard, 1) / world
    if rank == 0:
        q[0, 0] = -0.1
    with pytest.raises(ValueError, match=r"target: expected probabilities >= 0, got minimum -0\.1"):
        vocab_parallel_cross_entropy(shard, q)
    with pytest.raises(ValueError, match="target: expected probabilities summing to 1"):
        vocab_parallel_cross_entropy(shard, torch.softmax(shard, 1))
    with pytest.raises(ValueError, match="weight: expected shape \\(11,\\)"):
        vocab_parallel_cross_entropy(shard, y, weight=torch.ones(5, dtype=torch.float64))
    w_bad = torch.ones(11, dtype=torch.float64)
    w_bad[3] = float("nan")
    with pytest.raises(ValueError, match="weight: expected finite values, got NaN or inf"):
        vocab_parallel_linear_cross_entropy(
            torch.ones(4, 2),
            torch.ones(bounds[rank + 1] - bounds[rank], 2),
            y[:4],
            class_weight=w_bad.float(),
        )
    with pytest.raises(ValueError, match="expected the same number of rows on every rank"):
        vocab_parallel_cross_entropy(shard[: 4 + rank], y[: 4 + rank])
    _check_disagreements(world, rank, bounds, x, y, shard)
    # global_num_items: the non-ignored count (weighted) over micro-batches and ranks
    mine = [torch.tensor([1, -100, 2 + rank]), torch.tensor([-100] * rank + [0])]
    everyone = dist.group.WORLD
    assert global_num_items(*mine) == 3  # group=None: this rank's count
    assert global_num_items(*mine, group=everyone) == 3 * world
    w = torch.arange(1.0, 12.0, dtype=torch.float64)
    assert global_num_items(*mine, weight=w, group=everyone) == sum(6 + r for r in range(world))


def _check_disagreements(world, rank, bounds, x, y, shard):
    """Ranks that disagree on what must agree raise the same error on every rank (before:
    a number, or a wait forever); a rank with a bad argument raises its own error, the
    others name it (before: they waited forever in the all-gather)."""
    other = torch.where(y == 3, 4, y) if rank == world - 1 else y
    with pytest.raises(ValueError, match=rf"^target: expected the same class indices \(the "
                       rf"global targets\) on every rank, got different ones on rank\(s\) "
                       rf"\[{world - 1}\] than on rank 0$"):  # fmt: skip
        vocab_parallel_cross_entropy(shard, other)
    loss = vocab_parallel_cross_entropy(shard, other, check_ranks=False)  # the switch: a number
    assert loss.isfinite()
    ls = [0.0] * (world - 1) + [0.1]
    with pytest.raises(ValueError, match=rf"^label_smoothing: expected the same value on every "
                       rf"rank, got {re.escape(str(ls))} by rank$"):  # fmt: skip
        vocab_parallel_cross_entropy(shard, y, label_smoothing=ls[rank])
    with pytest.raises(ValueError, match=r"^check_ranks: expected the same value on every rank"):
        vocab_parallel_cross_entropy(shard, y, check_ranks=rank > 0)
    with pytest.raises(ValueError, match=r"^logits_shard: expected the same dtype on every "
                       r"rank, got \['float32', .*'float64'\] by rank$"):  # fmt: skip
        vocab_parallel_cross_entropy(shard.float() if rank < world - 1 else shard, y)
    with pytest.raises(ValueError, match=r"^logits_shard: expected the same batch shape"):
        vocab_parallel_cross_entropy(shard.reshape(2, 5, -1) if rank else shard.reshape(5, 2, -1),
                                     y.reshape(2, 5) if rank else y.reshape(5, 2), class_dim=-1)  # fmt: skip
    # the fused head: a different hidden width per rank, different chunks
    width = 4 + rank
    h, w = torch.ones(N, width), torch.ones(bounds[rank + 1] - bounds[rank], width)
    with pytest.raises(ValueError, match=r"^input: expected the same hidden width D on every "
                       rf"rank, got {re.escape(str(list(range(4, 4 + world))))} by rank$"):  # fmt: skip
        vocab_parallel_linear_cross_entropy(h, w, y)
    h, w = torch.ones(N, 4), torch.ones(bounds[rank + 1] - bounds[rank], 4)
    with pytest.raises(ValueError, match=r"^chunk_size: expected the same value on every rank"):
        vocab_parallel_linear_cross_entropy(h, w, y, chunk_size=3 + rank)
    # one rank's own mistake: its error there, its rank named on the others
    bad_y = y[:-1] if rank == 1 else y
    want = (r"^target: expected integer class indices of shape \(10,\)" if rank == 1 else
            r"^logits_shard: expected valid arguments on every rank, got an error on rank\(s\) "
            r"\[1\]")  # fmt: skip
    with pytest.raises((TypeError, ValueError), match=want):
        vocab_parallel_cross_entropy(shard, bad_y)
    want = want.replace("target: expected integer class indices of shape \\(10,\\)",
                        "chunk_size: expected an int >= 1 or None, got 0").replace(
        "logits_shard", "input")  # fmt: skip
    with pytest.raises(ValueError, match=want):
        vocab_parallel_linear_cross_entropy(h, w, y, chunk_size=0 if rank == 1 else None)


def _worker(rank, world, store):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        bounds = BOUNDS[world]
        failures = []
        for dtype in (torch.float64, torch.float32):
            for kind, cases, check in (("logits", LOGIT_CASES, _check_logits),
                                       ("linear", LINEAR_CASES, _check_linear)):  # fmt: skip
                for case in cases:
                    try:
                        check(case, dtype, rank, bounds)
                    except AssertionError as exc:
                        failures.append(f"{kind} {case} {dtype}: {exc}")
        for kind, check, case in (("logits", _check_logits, {"label_smoothing": 0.1}),
                                  ("linear", _check_linear, {"bias": True})):  # fmt: skip
            try:
                check(case, torch.bfloat16, rank, bounds)
            except AssertionError as exc:
                failures.append(f"{kind} {case} bfloat16: {exc}")
        _check_errors(world, rank, bounds)
        if world == 3:  # DTensor's own uneven split: 4 + 4 + 3 columns
            _check_dtensor(world, rank)
        assert not failures, "\n".join(failures)
    finally:
        dist.destroy_process_group()
    # All checked. Skip the interpreter's teardown: it takes seconds here, and now and then
    # a gloo thread aborts it ("terminate called without an active exception"), which
    # mp.spawn would report as a failure. A PyTorch bug, not crossent's (reproduced without
    # crossent): once torch._dynamo is imported (torch.optim imports it),
    # destroy_process_group no longer ends the gloo group's threads, and a pt_gloo_runloop
    # thread that drops the last reference to a collective's tensor during interpreter
    # finalization takes the GIL, is ended by Python and aborts (see pytorch/pytorch#179291).
    sys.stdout.flush()
    os._exit(0)


@pytest.mark.parametrize("world", [2, 3])
def test_vocab_parallel_equals_single_process(world, tmp_path):
    mp.spawn(_worker, args=(world, str(tmp_path / "store")), nprocs=world)


def test_needs_a_process_group():
    with pytest.raises(RuntimeError, match=r"group: expected an initialized torch\.distributed"):
        vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("num_items", "reduction", "error", "match"),
    [
        (-1, "mean", ValueError, "num_items: expected a finite number >= 0"),
        ("3", "mean", TypeError, "num_items: expected a real number or None, got '3'"),
        (3.0, "sum", ValueError, "num_items: expected None with reduction='sum'"),
    ],
)
def test_num_items_checked(num_items, reduction, error, match):
    with pytest.raises(error, match=match):
        vocab_parallel_cross_entropy(
            torch.zeros(2, 3), torch.tensor([0, 1]), num_items=num_items, reduction=reduction
        )


def test_global_num_items_local():
    y = [torch.tensor([[1, -100], [2, 3]]), torch.tensor([-100]), torch.zeros(4, 7)]
    assert global_num_items(*y) == 3 + 0 + 4
    with pytest.raises(ValueError, match="targets: expected at least one target"):
        global_num_items()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")
def test_torchrun_example():
    # one thread per rank: the two ranks share this machine's cores (crossent's thread pool
    # is not used at these sizes; the rare gloo abort at exit is PyTorch's, see _worker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CROSSENT_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
    out = subprocess.run(
        ["torchrun", "--standalone", "--nproc-per-node", "2",
         str(ROOT / "examples" / "tensor_parallel_head.py"), "--steps", "3"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert "losses match the single-process run" in out.stdout, out.stdout
    if out.returncode != 0:
        # PyTorch's own abort at interpreter exit (pytorch/pytorch#179291: a gloo thread frees a
        # tensor after Python has begun shutting down; once torch._dynamo is imported, as
        # torch.optim does, destroy_process_group leaves gloo's threads alive; it happens without
        # crossent too, in about 1 run of 4 here). Accepted only in exactly that form, after the
        # example has printed its result; any other failure fails the test.
        assert "terminate called without an active exception" in out.stderr, out.stderr[-3000:]
        assert "Traceback" not in out.stderr.split("terminate called")[0], out.stderr[-3000:]


@pytest.fixture
def world_of_one(tmp_path):
    """A gloo group of this process alone: enough to reach the autograd Functions' checks."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_unsupported_derivatives_raise_instead_of_silence(world_of_one):
    """Second derivatives, forward-mode AD and a target's gradient through the vocab-parallel
    head are refused with a message that names them (never a gradient without its graph)."""
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1])
    loss = vocab_parallel_cross_entropy(x, y)
    with pytest.raises(NotImplementedError, match=r"create_graph=True .* not supported"):
        torch.autograd.grad(loss, x, create_graph=True)
    h = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    loss = vocab_parallel_linear_cross_entropy(h, w, y)
    with pytest.raises(NotImplementedError, match=r"create_graph=True .* not supported"):
        torch.autograd.grad(loss, (h, w), create_graph=True)
    q = torch.softmax(torch.randn(3, 4, dtype=torch.float64), 1).requires_grad_()
    loss = vocab_parallel_linear_cross_entropy(h, w, q)
    with pytest.raises(NotImplementedError, match="a gradient for the target is not supported"):
        loss.backward()
    with pytest.raises(NotImplementedError, match=r"torch\.func transforms"):
        torch.func.grad(lambda z: vocab_parallel_cross_entropy(z, y))(x.detach())
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level(), pytest.raises(NotImplementedError, match="forward-mode AD"):
        vocab_parallel_cross_entropy(fwad.make_dual(x.detach(), torch.ones_like(x)), y)
    # first derivatives are still exact
    loss = vocab_parallel_cross_entropy(x, y)
    (g,) = torch.autograd.grad(loss, x)
    (ref,) = torch.autograd.grad(cross_entropy(x, y), x)
    torch.testing.assert_close(g, ref)


def test_the_vocabulary_dimension_is_never_guessed(world_of_one):
    """Megatron's ``[s, b, V_r]`` with ``b = V_r`` was read as PyTorch's ``(N, C, d)`` (a wrong
    loss, silently): k-dimensional logits now need ``class_dim``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 4, dtype=torch.float64, generator=g)  # [s, b, V] with b = V
    y = torch.randint(0, 4, (3, 4), generator=g)
    with pytest.raises(ValueError, match=r"^class_dim: expected 1 \(PyTorch's layout .*got None"):
        vocab_parallel_cross_entropy(x, y)
    megatron = vocab_parallel_cross_entropy(x, y, class_dim=-1)
    torch.testing.assert_close(megatron, cross_entropy(x.reshape(-1, 4), y.reshape(-1)))
    pytorch = vocab_parallel_cross_entropy(x, y, class_dim=1)
    torch.testing.assert_close(pytorch, cross_entropy(x, y))
    assert abs(float(megatron - pytorch)) > 0.01  # the two readings differ
    with pytest.raises(ValueError, match=r"^class_dim: expected a dimension of logits_shard of "
                       r"shape \(3, 4, 4\) \(from -3 to 2\), got 3$"):  # fmt: skip
        vocab_parallel_cross_entropy(x, y, class_dim=3)
    with pytest.raises(TypeError, match=r"^class_dim: expected an int or None, got 1\.0$"):
        vocab_parallel_cross_entropy(x, y, class_dim=1.0)
    with pytest.raises(TypeError, match=r"^check_ranks: expected a bool, got 'no'$"):
        vocab_parallel_cross_entropy(x, y, class_dim=1, check_ranks="no")
