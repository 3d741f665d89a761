"""crossent.torch.transformers: the fused head inside Hugging Face causal language models.

Tiny random models built from configs (no download): the patched loss and every parameter's
gradient equal the model's own (transformers' ``ForCausalLMLoss`` on the full logits), with
padding and ``-100`` labels; generation is unchanged; ``Trainer`` with gradient accumulation
reports the exact token mean and trains the same weights.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from crossent import reference  # noqa: E402
from crossent.torch.transformers import patch_model, unpatch_model  # noqa: E402

pytestmark = [
    # torch's own warnings while dynamo starts up and traces (not about crossent)
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"
    ),
]

V = 211
COMMON = {"vocab_size": V, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64}  # fmt: skip
MOE = {"num_experts_per_tok": 2, "output_router_logits": True, "router_aux_loss_coef": 0.1}
# family: (config class, model class, config overrides); None: GPT-2's own names
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 4}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    # a small cap, so that the soft-capping changes the loss
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"head_dim": 16, "final_logit_softcapping": 2.0},
    ),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", None),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {**MOE, "num_local_experts": 4}),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        "Qwen2MoeForCausalLM",
        {
            **MOE,
            "num_experts": 4,
            "moe_intermediate_size": 16,
            "shared_expert_intermediate_size": 32,
        },
    ),
    "cohere": ("CohereConfig", "CohereForCausalLM", {"logit_scale": 0.5}),  # logits * 0.5
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"logits_scaling": 4.0}),  # logits / 4
    "phi": ("PhiConfig", "PhiForCausalLM", {}),  # a bias on the head
}
GPT2 = {"vocab_size": V, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "bos_token_id": 0,
        "eos_token_id": 0}  # fmt: skip


def make(family, seed=0, dtype=torch.float32, **over):
    config_name, model_name, extra = FAMILIES[family]
    kwargs = GPT2 if extra is None else {**COMMON, **extra}
    config = getattr(transformers, config_name)(**{**kwargs, **over})
    with torch.random.fork_rng():  # transformers initializes from the global generator
        torch.manual_seed(seed)
        model = getattr(transformers, model_name)(config)
    return model.to(dtype)


def batch(seed=0, v=V):
    """Left padding (row 0), right padding (row 1), a masked prompt (row 2)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, v, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[1, -3:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[2, :5] = -100
    return ids, mask, labels


def loss_and_grads(model, *args, **kwargs):
    model.zero_grad(set_to_none=True)
    out = model(*args, **kwargs)
    loss = out.loss if not isinstance(out, tuple) else out[0]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def assert_grads_close(got, want, rel):
    assert got.keys() == want.keys()
    for name, g in want.items():
        err = (got[name] - g).abs().max() / g.abs().max().clamp_min(1e-30)
        assert err <= rel, f"{name}: {float(err):.2e}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_patched_loss_and_every_gradient_match(family):
    model = make(family)
    ids, mask, labels = batch()
    want, want_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    assert patch_model(model) is model
    got, got_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=0)
    assert got.loss.dtype == torch.float32
    assert got.logits is None
    assert_grads_close(got_grads, want_grads, 1e-5)
    if family in ("mixtral", "qwen2_moe"):  # the router's auxiliary loss is in both
        assert 0.1 * float(got.aux_loss.detach()) > 0.1
        torch.testing.assert_close(got.aux_loss, want.aux_loss)


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2", "mixtral", "cohere"])
def test_generation_and_the_forward_without_labels_are_unchanged(family):
    # (Mixtral's router loss in generate() fails with padding in transformers itself)
    model = make(family, **({"output_router_logits": False} if family == "mixtral" else {}))
    model.eval()
    ids, mask, _ = batch(1)
    kwargs = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, **kwargs)
        want_logits = model(ids, attention_mask=mask).logits
        patch_model(model)
        got = model.generate(ids, attention_mask=mask, **kwargs)
        got_logits = model(ids, attention_mask=mask).logits
    assert torch.equal(got, want)
    assert torch.equal(got_logits, want_logits)


@pytest.mark.parametrize("family", ["llama", "gemma2", "mixtral"])
def test_bfloat16_is_as_accurate_as_the_unpatched_model(family):
    """Against the same weights in float32, each parameter's gradient is about as far as the
    unpatched model's: both carry the bfloat16 body's rounding errors (1-2 % of the largest
    element here), which the two heads perturb differently, hence 1.5x plus one bfloat16 ulp
    (2^-7). The loss: within half a bfloat16 ulp (2^-8 relative), as linear_cross_entropy
    returns the input's dtype."""
    model = make(family, dtype=torch.bfloat16)
    truth = copy.deepcopy(model).float()
    ids, mask, labels = batch(2)
    _, ref_grads = loss_and_grads(truth, ids, attention_mask=mask, labels=labels)
    want, want_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    patch_model(model)
    got, got_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.loss, want.loss, rtol=2**-8, atol=1e-4)
    for name, g in ref_grads.items():
        scale = g.abs().max()
        err_got = (got_grads[name].float() - g).abs().max() / scale
        err_want = (want_grads[name].float() - g).abs().max() / scale
        assert err_got <= 1.5 * err_want + 2**-7, (
            f"{name}: {float(err_got):.2e} vs {float(err_want):.2e}"
        )


def test_autocast_runs_the_head_in_bfloat16_as_the_model_does():
    """A float32 model under torch.autocast (Trainer's bf16=True): both heads run in bfloat16,
    so the patched model is as close to the float32 model as the unpatched one."""
    model = make("qwen3")
    ids, mask, labels = batch(12)
    _, ref_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, want_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
        patch_model(model)
        got, got_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.loss, want.loss.float(), rtol=2**-8, atol=1e-4)
    # the fused head ran in bfloat16 (in float32 its loss would not be a bfloat16 number)
    assert got.loss.dtype == torch.float32 and torch.equal(got.loss, got.loss.bfloat16().float())
    for name, g in ref_grads.items():
        scale = g.abs().max()
        err_got = float((got_grads[name] - g).abs().max() / scale)
        err_want = float((want_grads[name] - g).abs().max() / scale)
        assert err_got <= 1.5 * err_want + 2**-7, f"{name}: {err_got:.2e} vs {err_want:.2e}"


@pytest.mark.parametrize("as_tensor", [True, False])
def test_num_items_in_batch_divides_the_summed_loss(as_tensor):
    model = make("gemma2")
    ids, mask, labels = batch(3)
    n = torch.tensor(37) if as_tensor else 37
    want, want_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels,
                                      num_items_in_batch=n)  # fmt: skip
    patch_model(model)
    got, got_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels,
                                    num_items_in_batch=n)  # fmt: skip
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=0)
    assert_grads_close(got_grads, want_grads, 1e-5)


def test_shift_labels_and_positional_labels():
    model = make("qwen2")
    ids, mask, labels = batch(4)
    shifted = F.pad(labels, (0, 1), value=-100)[:, 1:].contiguous()
    shifted[0, 6] = -100
    want = model(ids, attention_mask=mask, labels=labels, shift_labels=shifted).loss
    patch_model(model)
    got = model(ids, attention_mask=mask, labels=labels, shift_labels=shifted).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    # labels by position (input_ids, attention_mask, position_ids, cache, inputs_embeds, labels)
    got = model(ids, mask, None, None, None, labels)
    assert got.logits is None
    torch.testing.assert_close(got.loss, model(ids, attention_mask=mask, labels=labels).loss)


@pytest.mark.parametrize("family", ["gemma2", "cohere", "granite"])
def test_keep_logits_gives_the_model_logits(family):
    model = make(family)
    ids, mask, labels = batch(5)
    want, want_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    patch_model(model, keep_logits=True)
    got, got_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.logits, want.logits.detach(), rtol=1e-5, atol=1e-6)
    assert not got.logits.requires_grad
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=0)
    assert_grads_close(got_grads, want_grads, 1e-5)


@pytest.mark.parametrize("family", ["llama", "mixtral"])
def test_tuple_outputs_lose_only_the_logits(family):
    model = make(family)
    ids, mask, labels = batch(6)
    want = model(ids, attention_mask=mask, labels=labels, return_dict=False)
    patch_model(model)
    got = model(ids, attention_mask=mask, labels=labels, return_dict=False)
    logits_at = 2 if family == "mixtral" else 1  # (loss, aux_loss, logits, cache, ...) for MoE
    rest = want[:logits_at] + want[logits_at + 1 :]
    assert [type(a) for a in got] == [type(a) for a in rest]
    for a, b in zip(got, rest, strict=True):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=0)


def test_options_z_loss_label_smoothing_temperature():
    """Gemma 2: temperature divides the logits before the model's soft-cap (crossent's order)."""
    model = make("gemma2")
    ids, mask, labels = batch(7)
    cap, t, eps, lam = 2.0, 1.5, 0.1, 1e-3
    with torch.no_grad():
        z = model.lm_head(model.model(ids, attention_mask=mask).last_hidden_state).double()
    y = F.pad(labels, (0, 1), value=-100)[:, 1:]
    want = reference.cross_entropy(
        z, y, label_smoothing=eps, z_loss=lam, softcap=cap, temperature=t
    )
    patch_model(model, z_loss=lam, label_smoothing=eps, temperature=t)
    got = model(ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)


def test_patch_twice_then_unpatch_restores_the_model():
    model = make("phi")
    ids, mask, labels = batch(8)
    want = model(ids, attention_mask=mask, labels=labels)
    patch_model(model, label_smoothing=0.5)
    patch_model(model)  # the second call replaces the options, nothing is wrapped twice
    assert model.forward.__wrapped__ == type(model).forward.__get__(model)
    torch.testing.assert_close(model(ids, attention_mask=mask, labels=labels).loss, want.loss)
    clone = copy.deepcopy(model)  # (TRL's reference models) a patched model of its own
    assert clone.forward.model is clone and clone.lm_head.forward.__self__ is clone.forward
    torch.testing.assert_close(clone(ids, attention_mask=mask, labels=labels).loss, want.loss)
    assert unpatch_model(model) is model
    unpatch_model(model)
    assert "forward" not in model.lm_head.__dict__ and "_loss_function" not in model.__dict__
    assert "forward" not in model.__dict__ and "_crossent_patch" not in model.__dict__
    again = model(ids, attention_mask=mask, labels=labels)
    assert torch.equal(again.logits, want.logits) and torch.equal(again.loss, want.loss)


class _OddLlama(transformers.LlamaForCausalLM):
    """A forward that does to its logits what the fused head cannot, or skips loss_function."""

    mode = "clamp"

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.lm_head(hidden)
        if self.mode == "clamp":
            logits = logits.clamp(-5.0, 5.0)
        elif self.mode == "offset":
            logits = logits + 1.0
        elif self.mode == "view":
            logits = logits.view(*logits.shape[:2], self.config.vocab_size)
        loss = None
        if labels is not None:
            # mode "skip": the loss of the first position only, not self.loss_function(...)
            loss = (logits[:, 0, 0].sum() if self.mode == "skip" else
                    self.loss_function(logits, labels, self.config.vocab_size))  # fmt: skip
        return transformers.modeling_outputs.CausalLMOutputWithPast(loss=loss, logits=logits)


@pytest.mark.parametrize(
    ("mode", "message"),
    [("clamp", "transforms its logits before its loss in a way"),
     ("offset", "transforms its logits before its loss in a way"),
     ("skip", "computed its loss without self.loss_function"),
     ("view", "failed after its head returned crossent's stand-in for the logits")],
)  # fmt: skip
def test_a_forward_it_cannot_reproduce_is_refused_at_the_call(mode, message):
    model = _OddLlama(transformers.LlamaConfig(**COMMON))
    model.mode = mode
    ids, mask, labels = batch(9)
    patch_model(model)
    with pytest.raises(RuntimeError, match=message) as info:
        model(ids, attention_mask=mask, labels=labels)
    assert "_OddLlama" in str(info.value)
    assert model(ids, attention_mask=mask).logits.shape == (3, 10, V)  # and then works again


class _InlineLossLlama(transformers.LlamaForCausalLM):
    def forward(self, input_ids=None, labels=None, **kwargs):
        logits = self.lm_head(self.model(input_ids=input_ids).last_hidden_state)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        return transformers.modeling_outputs.CausalLMOutputWithPast(loss=loss, logits=logits)


def test_importing_the_module_does_not_import_transformers():
    code = "import sys, crossent.torch.transformers; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_models_and_options_it_cannot_patch_are_refused():
    llama = make("llama")
    with pytest.raises(
        TypeError, match="model: expected a transformers PreTrainedModel, got Linear"
    ):
        patch_model(torch.nn.Linear(2, 2))
    classifier = transformers.LlamaForSequenceClassification(transformers.LlamaConfig(**COMMON))
    with pytest.raises(ValueError, match=r"output embedding is a torch\.nn\.Linear, got Llama"):
        patch_model(classifier)
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=V, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2))  # fmt: skip
    with pytest.raises(ValueError, match="loss is transformers' ForCausalLMLoss, got T5"):
        patch_model(t5)
    custom = make("llama")
    custom.loss_function = lambda logits, labels, **kw: logits.sum()
    with pytest.raises(ValueError, match="ForCausalLMLoss, got LlamaForCausalLM with '<lambda>'"):
        patch_model(custom)
    with pytest.raises(
        ValueError, match=r"forward that calls self\.loss_function, got _InlineLossLlama"
    ):
        patch_model(_InlineLossLlama(transformers.LlamaConfig(**COMMON)))
    with pytest.raises(ValueError, match="z_loss: expected a finite number >= 0, got -1"):
        patch_model(llama, z_loss=-1)
    with pytest.raises(TypeError, match="keep_logits: expected a bool, got 'yes'"):
        patch_model(llama, keep_logits="yes")
    assert "_crossent_patch" not in llama.__dict__


def test_labels_for_fewer_positions_than_logits_to_keep_are_refused():
    model = patch_model(make("llama"))
    ids, mask, labels = batch(10)
    with pytest.raises(ValueError, match=r"labels: expected shape \(3, 2\) .* got \(3, 10\)"):
        model(ids, attention_mask=mask, labels=labels, logits_to_keep=2)
    assert model(ids, attention_mask=mask).logits.shape == (3, 10, V)


def test_torch_compile():
    torch._dynamo.reset()
    model = make("gemma2")
    ids, mask, labels = batch(11)
    want, want_grads = loss_and_grads(model, ids, attention_mask=mask, labels=labels)
    compiled = torch.compile(patch_model(model), backend="aot_eager")
    for _ in range(2):  # the second call runs the compiled code
        got, got_grads = loss_and_grads(compiled, ids, attention_mask=mask, labels=labels)
        got_grads = {k.removeprefix("_orig_mod."): g for k, g in got_grads.items()}
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=0)
        assert got.logits is None
        assert_grads_close(got_grads, want_grads, 1e-5)
    with torch.no_grad():
        assert torch.equal(compiled(ids, attention_mask=mask).logits, want.logits)


README = Path(__file__).resolve().parents[1] / "README.md"


def _examples(n=160, seed=0):
    """Byte-level token ids from the README; lengths 6-40, every third a masked prompt."""
    text = README.read_bytes()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = int(rng.integers(6, 40))
        start = int(rng.integers(0, len(text) - size))
        ids = list(text[start : start + size])
        prompt = int(rng.integers(0, size - 2)) if i % 3 == 0 else 0
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def _collate(examples):
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n], labels[row, :n], mask[row, :n] = (
            torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1)  # fmt: skip
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class _TokenMeans(transformers.TrainerCallback):
    """At each optimizer step, before it: the token mean over its micro-batches and the mean
    of their means, from the model's own logits (F.cross_entropy in float64)."""

    def __init__(self, micro_batches):
        self.micro_batches, self.token_means, self.means_of_means = micro_batches, [], []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        sums, counts = [], []
        with torch.no_grad():
            for mb in self.micro_batches[state.global_step]:
                hidden = model.model(mb["input_ids"], attention_mask=mb["attention_mask"])
                z = model.lm_head.weight @ hidden.last_hidden_state[..., None]
                y = F.pad(mb["labels"], (0, 1), value=-100)[:, 1:]
                sums.append(
                    F.cross_entropy(z[..., 0].double()[y != -100], y[y != -100], reduction="sum")
                )
                counts.append(int((y != -100).sum()))
        self.token_means.append(float(sum(sums)) / sum(counts))
        self.means_of_means.append(
            float(np.mean([float(s) / c for s, c in zip(sums, counts, strict=True)]))
        )


def _train(patched, tmp_path, examples, micro_batches):
    config = transformers.LlamaConfig(**{**COMMON, "vocab_size": 256, "num_hidden_layers": 1})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config)
    if patched:
        patch_model(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / f"run{int(patched)}"), per_device_train_batch_size=2,
        gradient_accumulation_steps=4, max_steps=20, optim="sgd", learning_rate=0.2,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )  # fmt: skip
    means = _TokenMeans(micro_batches)

    class InOrder(transformers.Trainer):  # the micro-batches the callback knows
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    trainer = InOrder(model=model, args=args, train_dataset=examples, data_collator=_collate,
                      callbacks=[means])  # fmt: skip
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return model, start, losses, means


@pytest.mark.slow
def test_trainer_with_gradient_accumulation_reports_the_token_mean(tmp_path):
    """20 optimizer steps of 4 micro-batches of 2 sequences with 3 to 78 labelled tokens each:
    the patched and unpatched runs log the same losses and end with the same weights, and each
    logged loss is the step's token mean (not the mean of its micro-batches' means)."""
    examples = _examples()
    micro = [_collate(examples[i : i + 2]) for i in range(0, len(examples), 2)]
    steps = [micro[i : i + 4] for i in range(0, len(micro), 4)]
    counts = [int((F.pad(m["labels"], (0, 1), value=-100)[:, 1:] != -100).sum()) for m in micro]
    assert len(set(counts)) > 20  # the micro-batches hold different numbers of tokens
    want_model, start, want, _ = _train(False, tmp_path, examples, steps)
    model, _, got, means = _train(True, tmp_path, examples, steps)
    assert len(got) == len(want) == 20
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(got, means.token_means, rtol=1e-5)
    gaps = np.abs(np.array(means.means_of_means) - means.token_means)
    assert gaps.max() > 100 * 1e-5 * max(got)  # the two means differ: the check has teeth
    assert got[-1] < got[0] - 0.5  # it learned
    for name, p in model.named_parameters():
        theirs = want_model.get_parameter(name).detach()
        moved = (theirs - start[name]).abs().max()
        diff = (p.detach() - theirs).abs().max()
        ulp = torch.finfo(torch.float32).eps * theirs.abs().max()  # the parameters' resolution
        assert diff <= 1e-4 * moved + 4 * ulp, f"{name}: {float(diff):.2e} of {float(moved):.2e}"
