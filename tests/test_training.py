"""The shared training loop at paper scale: precision, checkpointing, the optimiser, references and memory.

- test_bf16_weights_keep_an_update_at_the_papers_rate_only_with_float32_master_weights: one GA step at lr 6e-8 on a
  bfloat16 model moves the float32 master weights; the same step on bfloat16 weights (``pure``, the old loop)
  rounds every update away, because it is far below half a bfloat16 step at those weights.
- test_float32_weights_train_exactly_as_a_plain_adamw_loop: on float32 weights ``auto`` is the loop it always was
  (bit for bit against a plain AdamW loop written here), so every stored CPU result stays valid.
- test_mixed_precision_full_tuning_is_evaluated_from_float32_weights / test_lora_keeps_a_float32_adapter_on_a_bf16_base
- test_runtime_is_resolved_from_auto_and_recorded
- test_gradient_checkpointing_gives_the_same_gradients
- test_adamw8bit_without_a_gpu_is_a_one_line_error / test_an_unknown_precision_is_a_one_line_error
- test_precomputed_references_equal_the_original_models_log_probabilities_in_any_batch and
  test_losses_with_precomputed_references_equal_those_against_the_original_model: NPO and DPO keep numbers, not a
  second model, and their losses are what they were.
- test_the_memory_estimate_matches_what_training_allocates_on_a_small_model
- test_a_unit_given_several_gpus_spreads_its_model_over_them
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import build_tiny_model
from transformers import get_cosine_schedule_with_warmup

from rwku.errors import RwkuError
from rwku.methods.base import Reference
from rwku.methods.config import ModeConfig, TrainConfig, convert, field_hints
from rwku.methods.training import Example, collate, mean_token_nll, prepare_trainable, resolve_runtime, sequence_logprob, train


def texts(vocab: int, n: int = 4, length: int = 12, seed: int = 0) -> list[Example]:
    generator = torch.Generator().manual_seed(seed)
    return [Example(ids=torch.randint(3, vocab, (length,), generator=generator).tolist(), loss_mask=[1] * length)
            for _ in range(n)]


def ascent(model, batch):
    return -mean_token_nll(model, batch)


def run(model, examples, config, mode="full", **kwargs):
    model = prepare_trainable(model, ModeConfig(mode=mode))
    runtime = resolve_runtime(config, model, full_tuning=mode == "full")
    log = train(model, examples, kwargs.pop("loss", ascent), config, collate_fn=lambda b: collate(b, 0, "cpu"),
                runtime=runtime, **kwargs)
    return model, log


def test_bf16_weights_keep_an_update_at_the_papers_rate_only_with_float32_master_weights():
    config = TrainConfig(lr=6e-8, batch_size=4, epochs=1, warmup_steps=0)
    base = build_tiny_model(64).to(torch.bfloat16)
    before = torch.cat([p.detach().float().flatten() for p in base.parameters()])
    sizable = before.abs() > 1e-3  # AdamW moves a weight by about lr: below half a bf16 step (2^-9 |w|) from here up
    assert float((before[sizable].abs() * 2.0**-9).min()) > 10 * config.lr

    mixed, log = run(copy.deepcopy(base), texts(64), config)
    assert log.runtime["precision"] == "bf16-mixed"
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    after = torch.cat([p.detach().flatten() for p in mixed.parameters()])
    assert float((after != before)[sizable].float().mean()) > 0.5  # the master weights moved

    pure, log = run(copy.deepcopy(base), texts(64), TrainConfig(**{**config.__dict__, "precision": "pure"}))
    assert log.runtime["precision"] == "pure"
    after = torch.cat([p.detach().float().flatten() for p in pure.parameters()])
    assert torch.equal(after[sizable], before[sizable])  # the old loop: every such update rounded away


def test_float32_weights_train_exactly_as_a_plain_adamw_loop():
    config = TrainConfig(lr=1e-3, batch_size=2, grad_accum=2, epochs=2, warmup_steps=1)
    examples = texts(64, n=6)
    trained, log = run(build_tiny_model(64), examples, config)
    assert log.runtime == {"precision": "float32", "gradient_checkpointing": False, "optimizer": "adamw"}

    model = build_tiny_model(64)  # the loop as it was before precision existed
    optimizer = torch.optim.AdamW(list(model.parameters()), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, 4)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        for step in range(2):
            chunk = order[step * 4:(step + 1) * 4]
            for micro in [chunk[i:i + 2] for i in range(0, len(chunk), 2)]:
                (ascent(model, collate([examples[i] for i in micro], 0, "cpu")) * (len(micro) / len(chunk))).backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), model.state_dict().values()))


def test_mixed_precision_full_tuning_is_evaluated_from_float32_weights():
    seen = []
    config = TrainConfig(lr=1e-4, batch_size=2, epochs=2, warmup_steps=0, precision="bf16-mixed")
    model, _ = run(build_tiny_model(64).to(torch.bfloat16), texts(64), config,
                   on_epoch_end=lambda epoch, m: seen.append({p.dtype for p in m.parameters()}))
    assert seen == [{torch.float32}]
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    batch = collate(texts(64, n=1), 0, "cpu")
    assert model(input_ids=batch.input_ids).logits.dtype == torch.float32  # evaluation runs without autocast


def test_lora_keeps_a_float32_adapter_on_a_bf16_base():
    config = TrainConfig(lr=1e-3, batch_size=2, epochs=1, warmup_steps=0)
    model, log = run(build_tiny_model(64).to(torch.bfloat16), texts(64), config, mode="lora")
    assert log.runtime["precision"] == "bf16-mixed"
    adapter = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    base = {p.dtype for n, p in model.named_parameters() if "lora_" not in n}
    assert adapter == {torch.float32} and base == {torch.bfloat16}
    assert any(float(p.abs().max()) > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_runtime_is_resolved_from_auto_and_recorded():
    model = build_tiny_model(64)
    assert resolve_runtime(TrainConfig(), model, full_tuning=True).precision == "float32"
    assert resolve_runtime(TrainConfig(), model.to(torch.bfloat16), full_tuning=True).precision == "bf16-mixed"
    assert not resolve_runtime(TrainConfig(), model, full_tuning=True).gradient_checkpointing  # CPU: off under auto
    assert resolve_runtime(TrainConfig(gradient_checkpointing="on"), model, full_tuning=False).gradient_checkpointing


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for switch in ("off", "on"):
        model = build_tiny_model(64)
        config = TrainConfig(lr=1e-3, batch_size=4, epochs=1, warmup_steps=0, gradient_checkpointing=switch)

        def capture(m, batch):
            loss = ascent(m, batch)
            grads.append(torch.autograd.grad(loss, [m.model.layers[0].mlp.up_proj.weight], retain_graph=True)[0])
            assert m.is_gradient_checkpointing == (switch == "on")
            return loss

        _, log = run(model, texts(64), config, loss=capture)
        assert log.runtime["gradient_checkpointing"] == (switch == "on")
        assert not model.is_gradient_checkpointing  # off again once training ends
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_adamw8bit_without_a_gpu_is_a_one_line_error():
    with pytest.raises(RwkuError, match="adamw8bit"):
        run(build_tiny_model(64), texts(64), TrainConfig(optimizer="adamw8bit", batch_size=4, epochs=1))


def test_an_unknown_precision_is_a_one_line_error():
    hints = field_hints(TrainConfig)
    assert convert("precision", "bf16-mixed", hints["precision"]) == "bf16-mixed"
    with pytest.raises(RwkuError, match="precision=fp8: precision takes one of auto, float32, bf16-mixed, pure"):
        convert("precision", "fp8", hints["precision"])


def test_precomputed_references_equal_the_original_models_log_probabilities_in_any_batch():
    examples = texts(64, n=5, length=9) + texts(64, n=2, length=5, seed=1)
    model = build_tiny_model(64)
    original = copy.deepcopy(model).eval()
    reference = Reference(Reference.precompute(model, examples, pad_id=0, batch_size=3))
    assert all(isinstance(v, float) for v in reference.values.values())  # numbers only: no second model is kept
    for order in ([0, 6, 2], [5, 1], [3, 4, 6, 0]):
        batch = collate([examples[i] for i in order], 0, "cpu")
        with torch.no_grad():
            expected = sequence_logprob(original, batch)
        assert torch.allclose(reference.sequence_logprob(batch), expected, atol=1e-5)


@pytest.mark.parametrize("method", ["npo", "dpo"])
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_losses_with_precomputed_references_equal_those_against_the_original_model(tiny_lm, method, mode):
    """At every training step, each row's precomputed reference equals the original model's log-probability, so the
    NPO and DPO losses are those computed against a live copy of the original (the old way)."""
    import dataclasses

    from conftest import make_session

    from rwku.corpus.build import Corpus
    from rwku.methods import METHODS

    corpus = Corpus(targets=["x"], forget=["Ada wrote the first program.", "She was born in London in 1815.",
                                           "Her father was Lord Byron.", "She worked with Babbage."],
                    counterfactual=["Ada was a farmer.", "She was born in Paris.", "Her father was a baker.",
                                    "She worked alone."],
                    pair_prompts=["Write a short biography of Ada."] * 4)
    lm = dataclasses.replace(tiny_lm, model=copy.deepcopy(tiny_lm.model))
    live = METHODS[method]()
    original = copy.deepcopy(tiny_lm.model).eval()
    seen = []

    def against_the_original(model, batch, session, reference):
        both = batch[0] if isinstance(batch, tuple) else batch
        with torch.no_grad():
            expected = sequence_logprob(original, both)
        seen.append(float((reference.sequence_logprob(both) - expected).abs().max()))
        return type(live).loss(live, model, batch, session, reference)

    live.loss = against_the_original
    live.unlearn(make_session(lm, corpus, ModeConfig(mode=mode), method, lr=1e-2))
    assert seen and max(seen) < 1e-5


def test_the_memory_estimate_matches_what_training_allocates_on_a_small_model():
    """Weights, gradients and AdamW state exactly (counted from the tensors after a step); activations and logits
    within a factor of 1.5 of what autograd keeps for the backward pass (counted with saved-tensor hooks), on two
    shapes the coefficients were not fit on."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rwku.execution.resources import Shape, Training, training_memory

    for hidden, inner, layers, vocab, heads, kv, rows, tokens in ((80, 224, 3, 700, 4, 2, 3, 40), (160, 400, 2, 900, 8, 4, 4, 32)):
        config = LlamaConfig(hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers, vocab_size=vocab,
                             num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
        estimate = training_memory(Shape.from_config(config.to_dict()), 4, Training(mode="full", rows=rows, tokens=tokens))
        assert sum(p.numel() for p in model.parameters()) == Shape.from_config(config.to_dict()).parameters

        saved, seen = [0], set()

        def keep(tensor):
            if not isinstance(tensor, torch.nn.Parameter) and tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                saved[0] += tensor.numel() * tensor.element_size()
            return tensor

        ids = torch.randint(0, vocab, (rows, tokens))
        optimizer = torch.optim.AdamW(model.parameters())
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            logits = model(input_ids=ids).logits.float()
            loss = -torch.log_softmax(logits, -1).mean()
        loss.backward()
        optimizer.step()
        tensors = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
        assert estimate.weights == tensors(model.parameters())
        assert estimate.gradients == tensors(p.grad for p in model.parameters())
        assert estimate.optimizer == tensors(v for state in optimizer.state.values() for k, v in state.items() if k != "step")
        assert 1 / 1.5 < (estimate.activations + estimate.logits) / saved[0] < 1.5


def test_a_unit_given_several_gpus_spreads_its_model_over_them(monkeypatch):
    """--gpus-per-unit N > 1: the executors say so, and loading dispatches the layers with a balanced device map;
    otherwise (or with one GPU visible) the model goes to the device whole. (Run on real GPUs: docs/gpus-and-clusters.md.)"""
    import accelerate
    import accelerate.utils

    from rwku.execution.executors import LocalExecutor
    from rwku.models import loading

    calls = []

    class Model:
        _no_split_modules = ["LlamaDecoderLayer"]

        def to(self, device):
            calls.append(("to", device))
            return self

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(accelerate.utils, "get_balanced_memory", lambda model, no_split_module_classes: {0: 1, 1: 1})
    monkeypatch.setattr(accelerate, "infer_auto_device_map", lambda model, max_memory, no_split_module_classes: {"": 0})
    monkeypatch.setattr(accelerate, "dispatch_model", lambda model, device_map: calls.append(("dispatch", device_map)) or model)
    monkeypatch.setenv(loading.SPREAD_GPUS, "0")
    LocalExecutor(gpus_per_unit=2).run([], None, None)
    loading.place_model(Model(), "cuda")
    assert calls == [("dispatch", {"": 0})]
    LocalExecutor(gpus_per_unit=1).run([], None, None)
    loading.place_model(Model(), "cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    LocalExecutor(gpus_per_unit=2).run([], None, None)
    loading.place_model(Model(), "cuda")
    assert calls[1:] == [("to", "cuda"), ("to", "cuda")]
