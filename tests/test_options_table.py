"""The loss's options are declared once (crossent._spec.OPTIONS): every entry point follows it.

A new option is a new field of ``LossOptions``; these tests fail, rather than let it be dropped,
wherever it is forgotten: a public signature without it (or with another default), the custom
op's schema, the defaults fast path, the modules' attributes and ``extra_repr``, the forwarding
of the modules, the fused head and the DTensor path, the ``crossent explain`` flags.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

import crossent
from crossent import _spec
from crossent._spec import OPTIONS, LossOptions, Option, make_options, options_for, options_from

torch = pytest.importorskip("torch")
import crossent.torch as ct  # noqa: E402
import crossent.torch.distributed as ctd  # noqa: E402
from crossent.torch.transformers import patch_model  # noqa: E402


def _entry_points():
    """(table entry point, what to inspect, which of its options: per_call or None for all)."""
    from crossent.explain import explain

    return [
        ("core", crossent.cross_entropy, None),
        ("core", crossent.cross_entropy_grad, None),
        ("core", crossent.cross_entropy_with_grad, None),
        ("torch", ct.cross_entropy, None),
        ("module", ct.CrossEntropyLoss.__init__, False),
        ("module", ct.CrossEntropyLoss.forward, True),
        ("linear", ct.linear_cross_entropy, None),
        ("linear_module", ct.LinearCrossEntropyLoss.__init__, False),
        ("linear_module", ct.LinearCrossEntropyLoss.forward, True),
        ("vocab_parallel", ctd.vocab_parallel_cross_entropy, None),
        ("vocab_parallel_linear", ctd.vocab_parallel_linear_cross_entropy, None),
        ("patch_model", patch_model, None),
        ("explain", explain, None),
        *_jax_entry_points(),
    ]


def _jax_entry_points():
    """crossent.jax's functions take the options of their PyTorch counterparts (without the
    PyTorch-only ``return_lse`` and ``inplace``)."""
    try:
        import crossent.jax as cj
    except ImportError:  # JAX not installed
        return []
    return [
        ("core", cj.cross_entropy, None),
        ("linear", cj.linear_cross_entropy, None),
        ("vocab_parallel", cj.vocab_parallel_cross_entropy, None),
        ("vocab_parallel_linear", cj.vocab_parallel_linear_cross_entropy, None),
    ]


def signature_problems(table: tuple[Option, ...]) -> list[str]:
    """Where a public signature does not take exactly ``table``'s options for its entry point,
    with the table's defaults."""
    problems = []
    names = {o.name for o in table}
    for entry, fn, per_call in _entry_points():
        want = {
            o.name: o.default
            for o in table
            if entry in o.where and (per_call is None or o.per_call == per_call)
        }
        params = inspect.signature(fn).parameters
        where = f"{entry}: {fn.__qualname__}"
        for name, default in want.items():
            if name not in params:
                problems.append(f"{where} does not take {name}")
            elif params[name].default != default or type(params[name].default) is not type(default):
                problems.append(f"{where}: {name}={params[name].default!r}, table: {default!r}")
        extra = sorted((names & set(params)) - set(want))
        if extra:
            problems.append(f"{where} takes {extra}, which the table does not give it")
    return problems


def test_every_entry_point_takes_the_tables_options_with_its_defaults():
    assert signature_problems(OPTIONS) == []


def test_an_option_added_to_the_table_but_forgotten_fails_the_signature_test():
    """What a contributor who adds ``focal_gamma`` to the table and nowhere else would see."""
    new = dataclasses.replace(OPTIONS[2], name="focal_gamma", cli=None)
    problems = signature_problems((*OPTIONS, new))
    missing = {p.split(":")[0] for p in problems if "does not take focal_gamma" in p}
    assert missing == set(new.where)  # every entry point, named
    wanted = [e for e in _entry_points() if e[0] in new.where and e[2] is not True]
    assert len(problems) == len(wanted)


def test_the_table_is_loss_options_fields():
    assert [o.name for o in OPTIONS] == [f.name for f in dataclasses.fields(LossOptions)]
    for o in OPTIONS:
        assert o.check(o.default, o.name) == o.default, o.name  # the default passes its check
        assert o.doc and o.where <= set(_spec.ENTRY_POINTS), o.name
        assert (o.cli is not None) == ("explain" in o.where), o.name


# a valid value other than the default for every option: a new option must be added here
NON_DEFAULT = {
    "ignore_index": 1,
    "reduction": "sum",
    "label_smoothing": 0.25,
    "z_loss": 0.01,
    "softcap": 3.0,
    "temperature": 0.7,
    "num_items": 9.0,
    "return_lse": True,
    "inplace": True,
    "backend": "cpu",
}


def test_no_option_is_dropped_by_the_defaults_fast_path():
    assert set(NON_DEFAULT) == {o.name for o in OPTIONS}
    assert options_from({}, "core") is _spec.DEFAULT_OPTIONS
    everything = {o.name: o.default for o in options_for("torch")}
    assert options_from(everything, "torch") is _spec.DEFAULT_OPTIONS  # given, but defaults
    for name, value in NON_DEFAULT.items():
        args = {name: value, "reduction": "mean"} if name == "num_items" else {name: value}
        assert getattr(_spec.make_options(**args), name) == value, name
        if name != "backend":  # taken by no public function (internal)
            entry = next(e for e in _spec.ENTRY_POINTS if name in _spec._options._TAKES[e, None])
            assert getattr(options_from(args, entry), name) == value, name
    # by type too: True is 1 and 1.0, but not a valid temperature
    with pytest.raises(TypeError, match=r"temperature: expected a real number, got True"):
        options_from({"temperature": True}, "core")


def test_an_option_the_entry_point_does_not_take_is_refused_with_the_closest_name():
    with pytest.raises(
        TypeError,
        match=r"unexpected keyword argument 'label_smothing' \(did you mean 'label_smoothing'"
        r"\?\); the loss options here are ignore_index, reduction, label_smoothing, z_loss",
    ):
        crossent.cross_entropy([1.0, 2.0], 0, label_smothing=0.1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'return_lse'"):
        crossent.cross_entropy([1.0, 2.0], 0, return_lse=True)  # PyTorch's only
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'num_items'"):
        ct.CrossEntropyLoss(num_items=3.0)  # an argument of forward, not of the constructor
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'inplace'"):
        ct.LinearCrossEntropyLoss(inplace=True)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'backend'"):
        ct.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), backend="cpu")


def test_a_signature_shows_every_option_with_its_default_in_help():
    import pydoc

    text = pydoc.render_doc(crossent.cross_entropy, renderer=pydoc.plaintext)
    line = text.splitlines()[2]
    for o in options_for("core"):
        assert f"{o.name}: {o.type!r} = {o.default!r}" in line, o.name
    assert "**options" not in line


def test_a_typed_dictionary_that_disagrees_with_the_table_fails_at_import():
    """What a contributor who adds an option to the table but not to ``LossKwargs`` (or gives a
    public function another default) sees: an error when the module is imported."""
    new = dataclasses.replace(OPTIONS[2], name="focal_gamma")
    from crossent._spec import _options

    def loss(x, **options):  # pragma: no cover - never called
        return x

    loss.__annotations__["options"] = "Unpack[LossKwargs]"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_options, "OPTIONS", (*OPTIONS, new))
        with pytest.raises(TypeError, match=r"loss: LossKwargs has .* the table gives .*focal"):
            _options.takes_options("core")(loss)

    def other_default(x, ignore_index=-1, **options):  # pragma: no cover - never called
        return x

    with pytest.raises(TypeError, match=r"ignore_index=-1, the table's default is -100"):
        _options.takes_options("torch")(other_default)

    def untyped(x, **options):  # pragma: no cover - never called
        return x

    with pytest.raises(TypeError, match=r"untyped: expected \*\*options: Unpack\[one of"):
        _options.takes_options("core")(untyped)


def test_make_options_refuses_an_unknown_option():
    with pytest.raises(TypeError, match=r"make_options: unknown options \['focal'\]"):
        make_options(focal=2.0)


def test_the_custom_op_carries_every_option_by_name():
    from crossent.torch._ops import cross_entropy_op

    schema = cross_entropy_op._opoverload._schema
    kwarg_only = [a.name for a in schema.arguments if a.kwarg_only]
    assert kwarg_only == [o.name for o in OPTIONS]


def test_modules_keep_and_show_their_constructor_options():
    for cls, entry in (
        (ct.CrossEntropyLoss, "module"),
        (ct.LinearCrossEntropyLoss, "linear_module"),
    ):
        kw = {o.name: NON_DEFAULT[o.name] for o in options_for(entry, per_call=False)}
        module = cls(**kw)
        text = repr(module)
        for name, value in kw.items():
            assert getattr(module, name) == value
            assert f"{name}={value!r}" in text, (cls.__name__, name)


def _loss_options():
    """Each option of the loss at a value other than its default, one at a time, and all
    together ('mean', as ``num_items`` needs): derived from the table, so a new option is in."""
    one = [{o.name: NON_DEFAULT[o.name]} for o in options_for("core")]
    together = {o.name: NON_DEFAULT[o.name] for o in options_for("core") if o.name != "reduction"}
    return [*one, together]


def _losses_and_grads(x, y, kw):
    """``{entry point: (loss, gradient with respect to the logits)}`` for every backend."""
    per_call = {k: v for k, v in kw.items() if k == "num_items"}
    ctor = {k: v for k, v in kw.items() if k != "num_items"}
    eye = torch.eye(x.shape[1], dtype=torch.float64)

    def torch_grad(f):
        xt = torch.tensor(x, requires_grad=True)
        loss = f(xt, torch.tensor(y))
        loss.sum().backward()
        return loss.detach().numpy(), xt.grad.numpy()

    got = {
        "core": crossent.cross_entropy_with_grad(x, y, **kw),
        "torch": torch_grad(lambda a, b: ct.cross_entropy(a, b, **kw)),
        "module": torch_grad(lambda a, b: ct.CrossEntropyLoss(**ctor)(a, b, **per_call)),
        "linear": torch_grad(lambda a, b: ct.linear_cross_entropy(a, eye, b, **kw)),
        "linear_module": torch_grad(
            lambda a, b: ct.LinearCrossEntropyLoss(**ctor)(a, eye, b, **per_call)
        ),
    }
    try:
        import jax
        import jax.numpy as jnp

        import crossent.jax as cj
    except ImportError:  # JAX not installed
        return got
    with jax.enable_x64(True):
        for name, f in {
            "jax": lambda a: cj.cross_entropy(a, jnp.asarray(y), **kw),
            "jax_linear": lambda a: cj.linear_cross_entropy(a, jnp.eye(x.shape[1]), y, **kw),
        }.items():
            loss, vjp = jax.vjp(f, jnp.asarray(x))
            got[name] = (np.asarray(loss), np.asarray(vjp(jnp.ones_like(loss))[0]))
    return got


@pytest.mark.parametrize("kw", _loss_options(), ids=lambda kw: "-".join(kw))
def test_every_backend_gives_the_references_loss_and_gradient_for_every_option(kw):
    """An option that a backend forgets to forward or to compute fails here: each entry point's
    loss and gradient against :mod:`crossent.reference` (float64, every option of the table)."""
    from crossent import reference
    from numgrad import reference_grad

    g = np.random.default_rng(1)
    x = g.normal(size=(6, 5)) * 2
    y = np.array([0, 1, 4, 1, 3, 2])
    want = reference.cross_entropy(x, y, **kw)
    want_grad = reference_grad(x, y, **kw)
    assert not np.allclose(want, reference.cross_entropy(x, y)), "the option changes nothing"
    for name, (loss, grad) in _losses_and_grads(x, y, kw).items():
        np.testing.assert_allclose(loss, want, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_the_dtensor_path_refuses_the_options_it_cannot_pass_on():
    """The options that vocab_parallel_cross_entropy does not take are refused by name."""
    from crossent.torch.distributed._dtensor import dtensor_cross_entropy

    class FakeDTensor:  # the placement check passes; the options are checked before any work
        ndim = 2
        device_mesh = type("Mesh", (), {"ndim": 1})()

        def __init__(self):
            from torch.distributed.tensor import Shard

            self.placements = [Shard(1)]

    for o in OPTIONS:
        if o.name in {p.name for p in options_for("vocab_parallel")}:
            continue
        opts = dataclasses.replace(_spec.DEFAULT_OPTIONS, **{o.name: NON_DEFAULT[o.name]})
        with pytest.raises(ValueError, match=rf"{o.name}: not supported for DTensor input"):
            dtensor_cross_entropy(FakeDTensor(), None, None, opts)


def test_explain_flags_come_from_the_table(tmp_path):
    import argparse

    from crossent.cli import explain as cli_explain

    parser = argparse.ArgumentParser()
    cli_explain.add_parser(parser.add_subparsers())
    flags = {a.dest: a for a in parser._subparsers._group_actions[0].choices["explain"]._actions}
    for o in options_for("explain"):
        assert flags[o.name].default == o.default
        assert flags[o.name].metavar == o.cli[0]


@pytest.mark.slow
def test_a_type_checker_sees_each_option_of_the_signature(tmp_path):
    """``**options: Unpack[LossKwargs]`` (PEP 692): mypy checks each option's name and type."""
    mypy_api = pytest.importorskip("mypy.api")
    user = tmp_path / "user.py"
    user.write_text(
        "import crossent\n"
        "crossent.cross_entropy([[0.0, 1.0]], [0], label_smoothing=0.1, reduction='sum')\n"
        "crossent.cross_entropy([[0.0, 1.0]], [0], label_smoothing='a')\n"
        "crossent.cross_entropy([[0.0, 1.0]], [0], label_smothing=0.1)\n"
    )
    out, _, status = mypy_api.run(
        ["--no-incremental", "--follow-imports=silent", "--python-version=3.11", str(user)]
    )
    errors = [line.split(": error: ")[0].rsplit(":", 1)[1] for line in out.splitlines()
              if ": error: " in line]  # fmt: skip
    assert status == 1 and errors == ["3", "4"], out
    assert 'did you mean "label_smoothing"' in out
