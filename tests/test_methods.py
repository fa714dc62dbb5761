"""Unlearning methods on a tiny random model: each loss against a hand-computed value, what each mode may and
may not change, corpus caching, and a resumable run."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import batch_of, fresh, make_session

from rwku.corpus.build import Corpus, CorpusSpec, build_corpus
from rwku.corpus.prompts import scrub_counterfactual
from rwku.data import PASSAGE, RwkuData
from rwku.errors import RwkuError
from rwku.evaluation.context import no_progress
from rwku.methods import METHODS
from rwku.methods.base import chat_example
from rwku.methods.config import ModeConfig, resolve_settings
from rwku.methods.dpo import dpo_loss
from rwku.methods.ga import ga_loss
from rwku.methods.npo import npo_loss
from rwku.methods.training import collate, mean_token_nll, prepare_trainable, sequence_logprob
from rwku.models.prompting import PromptFormat

TEXTS = ["Isaac Newton was an English physicist and mathematician.", "Stephen King is an American author.",
         "The answer is True.", "Please briefly answer the following question."]


# ------------------------------------------------------------------ losses against hand-computed values


def test_npo_loss_hand_value():
    # −(2/β)·log σ(−β(log π − log π_ref)) with log π = −2, log π_ref = −1, β = 0.2: 10·log(1 + e^(−0.2)) = 5.981388
    loss = npo_loss(torch.tensor([-2.0]), torch.tensor([-1.0]), 0.2)
    assert float(loss) == pytest.approx(10 * math.log(1 + math.exp(-0.2)), abs=1e-6)
    assert float(loss) == pytest.approx(5.981388, abs=1e-5)
    # at π = π_ref the loss is (2/β)·log 2 for any β
    assert float(npo_loss(torch.tensor([-3.0, -5.0]), torch.tensor([-3.0, -5.0]), 0.5)) == pytest.approx(4 * math.log(2))


def test_dpo_loss_hand_value():
    # margin = (−3 − (−4)) − (−2 − (−1)) = 2; β = 0.1: −log σ(0.2) = log(1 + e^(−0.2)) = 0.598139
    loss = dpo_loss(torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([-1.0]), 0.1)
    assert float(loss) == pytest.approx(0.598139, abs=1e-6)


def test_ga_loss_is_the_negated_language_modelling_loss(tiny_lm):
    text = TEXTS[0]
    batch = batch_of(tiny_lm, [text])
    ids = batch.input_ids
    expected = tiny_lm.model(input_ids=ids, labels=ids).loss  # transformers' mean token cross-entropy
    assert float(ga_loss(tiny_lm.model, batch)) == pytest.approx(-float(expected), abs=1e-5)


def test_padding_is_masked_by_attention_not_by_pad_id(tiny_lm):
    # SmolLM2-style: pad = eos; the real EOS ending each text must stay in the loss
    tok = tiny_lm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id
    short, long_ = TEXTS[2], TEXTS[0]
    together = sequence_logprob(tiny_lm.model, batch_of(tiny_lm, [short, long_]))
    alone = sequence_logprob(tiny_lm.model, batch_of(tiny_lm, [short]))
    assert float(together[0]) == pytest.approx(float(alone[0]), abs=1e-4)
    ids = batch_of(tiny_lm, [short]).input_ids
    manual = torch.log_softmax(tiny_lm.model(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).sum()
    assert float(alone[0]) == pytest.approx(float(manual), abs=1e-4)  # includes the final EOS token


def test_rt_loss_counts_only_the_answer(tiny_lm):
    example = chat_example(PromptFormat(tiny_lm.tokenizer), "Who is Newton?", "I don't know.", 128)
    batch = collate([example], tiny_lm.tokenizer.pad_token_id, "cpu")
    labels = batch.input_ids.clone()
    labels[batch.loss_mask == 0] = -100
    expected = tiny_lm.model(input_ids=batch.input_ids, labels=labels).loss
    assert float(mean_token_nll(tiny_lm.model, batch)) == pytest.approx(float(expected), abs=1e-5)
    assert example.ids[-1] == tiny_lm.tokenizer.eos_token_id and example.loss_mask[-1] == 1
    assert sum(example.loss_mask) == len(tiny_lm.tokenizer("I don't know.", add_special_tokens=False)["input_ids"]) + 1


# ------------------------------------------------------------------ what training may change


def test_gradient_ascent_raises_the_forget_loss_and_is_reproducible(tiny_model_dir):
    corpus = Corpus(targets=["x"], forget=TEXTS)
    results = []
    for _ in range(2):
        lm = fresh(tiny_model_dir)
        batch = batch_of(lm, TEXTS)
        with torch.no_grad():
            before = float(mean_token_nll(lm.model, batch))
        unlearned = METHODS["ga"]().unlearn(make_session(lm, corpus))
        with torch.no_grad():
            after = float(mean_token_nll(unlearned.model, batch))
        assert after > before + 0.1
        assert len(unlearned.log["steps"]) == 4  # 4 texts / batch 2 × 2 epochs
        results.append([p.detach().clone() for p in unlearned.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))  # same config and seed, same weights


def test_lora_leaves_base_weights_untouched(tiny_model_dir):
    lm = fresh(tiny_model_dir)
    original = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    batch = batch_of(lm, TEXTS[:2])
    with torch.no_grad():
        original_logits = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    unlearned = METHODS["npo"]().unlearn(make_session(lm, Corpus(targets=["x"], forget=TEXTS), ModeConfig(mode="lora"), "npo", lr=5e-2))
    peft_model = unlearned.model
    changed_lora = 0
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            changed_lora += 1
            continue
        base_name = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(param, original[base_name]), name
    assert changed_lora > 0
    with torch.no_grad():
        adapted = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with peft_model.disable_adapter():
            disabled = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert not torch.allclose(adapted, original_logits, atol=1e-4)
    assert torch.allclose(disabled, original_logits, atol=1e-6)


def test_partial_layers_keep_frozen_layers_bit_identical(tiny_model_dir):
    lm = fresh(tiny_model_dir)
    original = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    mode = ModeConfig(mode="full", train_layers=(1, 2))
    unlearned = METHODS["ga"]().unlearn(make_session(lm, Corpus(targets=["x"], forget=TEXTS), mode))
    changed = {n for n, p in unlearned.model.named_parameters() if not torch.equal(p, original[n])}
    assert changed and all(".layers.1." in n for n in changed)
    assert all(torch.equal(p, original[n]) for n, p in unlearned.model.named_parameters() if ".layers.1." not in n)


def test_partial_layers_with_lora_only_adapt_those_layers(tiny_model_dir):
    lm = fresh(tiny_model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # peft's read of a deprecated transformers name is silenced
        model = prepare_trainable(lm.model, ModeConfig(mode="lora", train_layers=(0, 1)))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.0." in n and "lora_" in n for n in trainable)


def test_bad_modes_are_clear_errors(tiny_model_dir):
    lm = fresh(tiny_model_dir)
    with pytest.raises(RwkuError, match="has 2 layers"):
        prepare_trainable(lm.model, ModeConfig(mode="full", train_layers=(1, 5)))
    with pytest.raises(RwkuError, match="no module named"):
        prepare_trainable(lm.model, ModeConfig(mode="lora", lora_targets=("c_attn",)))
    with pytest.raises(RwkuError, match="choose full or lora"):
        ModeConfig(mode="qlora")


def test_dpo_and_rt_train_on_their_corpora(tiny_model_dir):
    corpus = Corpus(targets=["x"], forget=TEXTS[:2], counterfactual=TEXTS[2:], pair_prompts=["Write about x."] * 2,
                    questions=["Who is x?", "Where was x born?"], refusals=["I don't know.", "No idea."])
    for name in ("dpo", "rt"):
        unlearned = METHODS[name]().unlearn(make_session(fresh(tiny_model_dir), corpus, ModeConfig(mode="lora"), name))
        assert len(unlearned.log["steps"]) == 2 and all(math.isfinite(s["loss"]) for s in unlearned.log["steps"])


def test_repe_hooks_steer_and_close_restores(tiny_model_dir):
    lm = fresh(tiny_model_dir)
    batch = batch_of(lm, TEXTS[:1])
    with torch.no_grad():
        plain = lm.model(input_ids=batch.input_ids).logits
    unlearned = METHODS["repe"]().unlearn(make_session(lm, Corpus(targets=["x"]), method="repe", alpha=1.5, repe_layers=(0, 2)))
    with torch.no_grad():
        steered = lm.model(input_ids=batch.input_ids).logits
    unlearned.close()
    with torch.no_grad():
        restored = lm.model(input_ids=batch.input_ids).logits
    assert not torch.allclose(plain, steered) and torch.equal(plain, restored)
    assert unlearned.log["layers"] == [0, 2]


def test_icu_sets_the_official_preamble(tiny_lm):
    unlearned = METHODS["icu"]().unlearn(make_session(tiny_lm, Corpus(targets=["x"]), method="icu"))
    assert unlearned.preamble.startswith("You are an AI Assistant who is supposed to unlearn about {}")
    assert unlearned.model is tiny_lm.model


# ------------------------------------------------------------------ configuration and corpora


def test_presets_and_overrides_resolve_in_order_with_their_sources(tmp_path):
    from rwku.methods.config import PAPER

    paper = resolve_settings(METHODS["npo"], "full", "single", "paper")
    assert (paper.train.lr, paper.train.batch_size, paper.train.grad_accum, paper.train.epochs, paper.params.beta) == (2e-6, 16, 1, 3, 0.2)
    assert paper.sources["lr"] == PAPER and "0.2" in paper.sources["beta"]
    batch = resolve_settings(METHODS["ga"], "full", "batch", "paper")
    assert batch.train.lr == 3e-8 and batch.sources["lr"] == PAPER
    lora_batch = resolve_settings(METHODS["ga"], "lora", "batch", "paper")  # the paper has no batch-setting LoRA value
    assert lora_batch.train.lr == 1e-5 and "no batch-setting lora value" in lora_batch.sources["lr"]
    config_file = tmp_path / "c.json"
    config_file.write_text('{"lr": 0.5, "epochs": 7}')
    resolved = resolve_settings(METHODS["ga"], "lora", "single", "small", {"epochs": "9"}, config_file)
    assert (resolved.train.lr, resolved.train.epochs, resolved.train.batch_size) == (0.5, 9, 4)
    assert resolved.sources["lr"].startswith("--config") and resolved.sources["epochs"] == "--set"
    assert resolved.sources["batch_size"].startswith("calibrated here")
    assert resolve_settings(METHODS["repe"], "lora", "single", "small").params.alpha == 0.25
    assert "beta" not in resolved.keys() and "alpha" not in resolved.keys()  # GA has no beta nor alpha


def test_each_method_keeps_its_own_parameters():
    assert set(resolve_settings(METHODS["npo"], "full", "single", "none").as_config()) == {"train", "corpus", "params"}
    assert set(resolve_settings(METHODS["ga"], "full", "single", "none").as_config()) == {"train", "corpus"}
    assert resolve_settings(METHODS["repe"], "full", "single", "none").as_config() == {"params": {"alpha": 1.0, "repe_layers": None, "repe_reader": "mean"}}
    assert resolve_settings(METHODS["icu"], "full", "single", "none").as_config() == {}
    assert resolve_settings(METHODS["dpo"], "full", "single", "none").params.beta == 0.1


@pytest.mark.parametrize("key, value, fragment", [
    ("lr", "abc", "lr=abc: lr takes a number"),
    ("epochs", "2.5", "epochs takes a whole number"),
    ("repe_layers", "4", "a range like 4-8"),
])
def test_bad_values_are_one_line_errors(key, value, fragment):
    method = METHODS["repe" if key == "repe_layers" else "ga"]
    with pytest.raises(RwkuError, match=fragment):
        resolve_settings(method, "full", "single", "none", {key: value})


def test_a_key_no_chosen_method_takes_is_refused():
    from rwku.methods.config import check_known_keys

    check_known_keys([METHODS["ga"], METHODS["repe"]], {"--set": {"alpha": 1, "lr": 1}})  # each taken by one method
    with pytest.raises(RwkuError, match="--set: unknown hyper-parameter 'beta' .no chosen method, ga, repe, takes it"):
        check_known_keys([METHODS["ga"], METHODS["repe"]], {"--set": {"beta": 1}})
    with pytest.raises(RwkuError, match="learning_rate"):
        check_known_keys([METHODS["ga"]], {"--set": {"learning_rate": 1}})


def test_auto_preset_says_why():
    from rwku.methods.config import choose_preset

    assert choose_preset("auto", "smollm2-135m")[0] == "small"
    name, reason = choose_preset(None, "/models/tiny-gpt")
    assert name == "paper" and "not the embedded default" in reason and "--preset small" in reason
    assert choose_preset("small", "meta-llama/Meta-Llama-3-8B-Instruct") == ("small", "--preset small")
    with pytest.raises(RwkuError, match="--preset tiny: choose auto, paper, small, none"):
        choose_preset("tiny", "x")


def test_counterfactual_scrub_removes_the_official_phrases():
    assert scrub_counterfactual("A completely fabricated story of a totally made-up man.") == "A story of a man."


def test_generated_corpus_is_cached(tiny_lm, tmp_path, monkeypatch):
    target = RwkuData.open(["demo"]).select("1")[0]
    spec = CorpusSpec(size=3, questions=2, max_new_tokens=6, question_tokens=5)
    first = build_corpus(tiny_lm, target, spec, ["forget", "counterfactual", "questions"], prompts=PromptFormat(tiny_lm.tokenizer),
                         progress=no_progress, cache_dir=tmp_path)
    assert len(first.forget) == 3 and len(first.questions) == 2 and first.forget[1].startswith(spec.prefixes[1])
    assert len(first.pairs()) == 3 and first.pairs()[0][0].endswith(f"Please write a short biography of {target.name}.")

    def no_sampling(*args, **kwargs):
        raise AssertionError("the cached corpus should have been reused")

    monkeypatch.setattr("rwku.corpus.build.sample", no_sampling)
    again = build_corpus(tiny_lm, target, spec, ["forget", "counterfactual", "questions"], prompts=PromptFormat(tiny_lm.tokenizer),
                         progress=no_progress, cache_dir=tmp_path)
    assert again.forget == first.forget and again.questions == first.questions
    with pytest.raises(AssertionError):  # another seed is another corpus
        build_corpus(tiny_lm, target, CorpusSpec(size=3, seed=1, max_new_tokens=6), ["forget"], prompts=PromptFormat(tiny_lm.tokenizer),
                     progress=no_progress, cache_dir=tmp_path)


def test_corpus_sampling_leaves_the_global_random_state_alone(tiny_lm, tmp_path):
    target = RwkuData.open(["demo"]).select("1")[0]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    build_corpus(tiny_lm, target, CorpusSpec(size=2, max_new_tokens=4), ["forget"], prompts=PromptFormat(tiny_lm.tokenizer),
                 progress=no_progress, cache_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), state)  # sampling drew from a forked generator


def test_official_corpus_loads_from_the_shared_data(shared_data):
    from rwku.corpus.build import official_corpus

    data = RwkuData.open([str(shared_data / "strzar-purge")])
    corpus = official_corpus(data, data.select("1")[0], limit=5)
    assert len(corpus.forget) == 5 and len(corpus.counterfactual) == 5 and len(corpus.questions) == 5
    assert corpus.pairs()[0][0].startswith("Stephen King is") and corpus.passage
    assert corpus.refusals[0] and corpus.source == "official"


def test_ga_passage_caps_each_targets_passages_at_the_corpus_size(tiny_lm, monkeypatch):
    from rwku.evaluation.settings import RunSettings
    from rwku.unlearn import UnlearnJob, unit_corpus

    data = RwkuData.open(["demo"])
    targets = data.select("1-2")
    job = UnlearnJob(run=RunSettings(model="tiny"), data=data, targets=targets, methods=["ga_passage"], setting="batch",
                     preset="none", overrides={"corpus_size": 1})
    corpus = unit_corpus(job, tiny_lm, targets, "ga_passage", job.settings("ga_passage"), no_progress)
    passages = [data.load(t, (), optional=(PASSAGE,))["passage"] for t in targets]
    assert corpus.passage == [passages[0][0], passages[1][0]]  # one per target, not the first target's two
    unlearned = METHODS["ga_passage"]().unlearn(make_session(tiny_lm, corpus, method="ga_passage"))
    assert unlearned.log["examples"] == 2


@pytest.mark.parametrize("kernels", ["invariant", "fast"])
def test_corpus_is_the_same_at_any_sampling_batch_size(tiny_lm, tmp_path, kernels):
    """Each row draws from its own generator seeded by (seed, target, kind, row), so batching changes no text (under
    fast kernels rows really share batches: the draws still line up, float32 on a CPU moving logits by noise only)."""
    import dataclasses

    lm = dataclasses.replace(tiny_lm, kernels=kernels)
    target = RwkuData.open(["demo"]).select("1")[0]
    corpora = [build_corpus(lm, target, CorpusSpec(size=5, questions=3, max_new_tokens=8, question_tokens=6, batch_size=size),
                            ["forget", "questions"], prompts=PromptFormat(tiny_lm.tokenizer), progress=no_progress,
                            cache_dir=tmp_path / f"batch{size}") for size in (1, 4)]
    assert corpora[0].forget == corpora[1].forget and corpora[0].questions == corpora[1].questions
    assert len(set(corpora[0].questions)) > 1  # rows with the same prompt still draw different texts
    other_seed = build_corpus(lm, target, CorpusSpec(size=5, max_new_tokens=8, seed=7), ["forget"],
                              prompts=PromptFormat(tiny_lm.tokenizer), progress=no_progress, cache_dir=tmp_path / "seed7")
    assert other_seed.forget != corpora[0].forget


def test_corpus_cache_key_names_dtype_device_kernels_and_batch_only_when_fast(tiny_lm):
    import copy
    import dataclasses

    from rwku.corpus.build import cache_key

    target = RwkuData.open(["demo"]).select("1")[0]
    fmt = PromptFormat(tiny_lm.tokenizer)
    key = lambda lm, size=4: cache_key(lm, target, "forget", CorpusSpec(batch_size=size), fmt)  # noqa: E731
    assert key(tiny_lm, 4) == key(tiny_lm, 16)
    fast = dataclasses.replace(tiny_lm, kernels="fast")
    assert key(fast) != key(tiny_lm) and key(fast, 4) != key(fast, 16)
    half = dataclasses.replace(tiny_lm, model=copy.deepcopy(tiny_lm.model).to(torch.bfloat16))
    assert key(half) != key(tiny_lm)
