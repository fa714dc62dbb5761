"""Methods beyond the paper (SimNPO, WGA, UNDIAL, IdkDPO, RepE's PCA reader) on a tiny random model: each loss
against a hand-computed value (a flipped sign or a missing stop-gradient fails), and every new method in full,
LoRA and partial-layer modes, single- and batch-target, with per-epoch evaluation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import make_session

from rwku.corpus.build import Corpus
from rwku.data import RwkuData
from rwku.methods import METHODS
from rwku.methods.base import text_example
from rwku.methods.config import ModeConfig, resolve_settings
from rwku.methods.ga import ga_loss
from rwku.methods.simnpo import simnpo_loss
from rwku.methods.training import collate, counted_tokens, token_logprobs
from rwku.methods.undial import undial_loss
from rwku.methods.wga import wga_loss
from rwku.models.loading import load_model

TEXTS = ["Isaac Newton was an English physicist and mathematician.", "Stephen King is an American author.",
         "The answer is True.", "Please briefly answer the following question."]
BEYOND = ("simnpo", "wga", "undial", "idkdpo")


def fresh(model_dir):
    return load_model(str(model_dir), device="cpu", dtype="float32")


def batch_of(lm, texts):
    return collate([text_example(lm.tokenizer, t, 64) for t in texts], lm.tokenizer.pad_token_id, "cpu")


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ------------------------------------------------------------------ SimNPO


@pytest.mark.parametrize("logprob, length", [(-2.0, 1), (-6.0, 3), (-40.0, 20), (-1.5, 50)])
@pytest.mark.parametrize("beta, gamma", [(2.5, 0.0), (0.7, 3.0)])
def test_simnpo_equals_its_formula_at_several_lengths(logprob, length, beta, gamma):
    # −(2/β) log σ(−(β/|y|) log π(y) − γ), one text
    expected = -(2 / beta) * math.log(sigmoid(-(beta / length) * logprob - gamma))
    loss = simnpo_loss(torch.tensor([logprob]), torch.tensor([float(length)]), beta, gamma)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_simnpo_hand_value_and_length_normalisation():
    # log π = −4 over 2 tokens, β = 2, γ = 1: −log σ(2·2 − 1) = log(1 + e^(−3)) = 0.048587
    assert float(simnpo_loss(torch.tensor([-4.0]), torch.tensor([2.0]), 2.0, 1.0)) == pytest.approx(0.048587, abs=1e-6)
    # the same mean token log-likelihood gives the same loss at any length: the batch mean of equal terms
    both = simnpo_loss(torch.tensor([-3.0, -30.0]), torch.tensor([3.0, 30.0]), 2.5, 0.5)
    one = simnpo_loss(torch.tensor([-3.0]), torch.tensor([3.0]), 2.5, 0.5)
    assert float(both) == pytest.approx(float(one), rel=1e-6)
    # a less likely text has a lower loss: minimising it lowers the likelihood (a flipped sign would raise it)
    assert float(simnpo_loss(torch.tensor([-9.0]), torch.tensor([3.0]), 2.5, 0.0)) < float(one)


def test_simnpo_method_loss_on_a_tiny_model_uses_each_texts_own_length(tiny_lm):
    batch = batch_of(tiny_lm, TEXTS)
    session = make_session(tiny_lm, Corpus(targets=["x"], forget=TEXTS), method="simnpo", beta=2.0, gamma=0.5)
    with torch.no_grad():
        loss = METHODS["simnpo"]().loss(tiny_lm.model, batch, session, None)
        terms = []
        for text in TEXTS:  # one text at a time: no padding, every token after the first counts
            ids = batch_of(tiny_lm, [text]).input_ids
            logprob = torch.log_softmax(tiny_lm.model(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).sum()
            terms.append(-(2 / 2.0) * math.log(sigmoid(-(2.0 / (ids.shape[1] - 1)) * float(logprob) - 0.5)))
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-4)


# ------------------------------------------------------------------ WGA


def test_wga_hand_value_and_stop_gradient():
    # tokens with p = 0.5 and 0.25 (a third, masked, does not count), β = 1: mean(0.5·log 0.5, 0.25·log 0.25) = −0.346574
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.9]])).requires_grad_()
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss = wga_loss(logprobs, mask, 1.0)
    assert float(loss) == pytest.approx(-0.346574, abs=1e-6)
    loss.backward()
    # ∂L/∂log p_t = p_t^β / N: the weight is detached (with it attached the gradient would be (β + 1)·p^β / N)
    assert torch.allclose(logprobs.grad, torch.tensor([[0.25, 0.125, 0.0]]))
    # β = 2: mean(0.25·log 0.5, 0.0625·log 0.25) = −0.129965
    assert float(wga_loss(torch.log(torch.tensor([[0.5, 0.25]])), torch.ones(1, 2), 2.0)) == pytest.approx(-0.129965, abs=1e-6)


def test_wga_on_a_tiny_model_is_ga_at_beta_zero_and_weights_tokens_by_probability(tiny_lm):
    batch = batch_of(tiny_lm, TEXTS)
    with torch.no_grad():
        assert float(wga_loss(*token_logprobs(tiny_lm.model, batch), 0.0)) == pytest.approx(float(ga_loss(tiny_lm.model, batch)), abs=1e-6)
        session = make_session(tiny_lm, Corpus(targets=["x"], forget=TEXTS), method="wga", beta=1.0)
        loss = METHODS["wga"]().loss(tiny_lm.model, batch, session, None)
        ids = batch.input_ids  # independent: transformers' per-token cross-entropy
        logits = tiny_lm.model(input_ids=ids, attention_mask=batch.attention_mask).logits[:, :-1]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        mask = batch.attention_mask[:, 1:].bool()
        expected = -(torch.exp(-ce) * ce)[mask].mean()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5) and float(loss) < 0


# ------------------------------------------------------------------ UNDIAL


def test_undial_hand_value_and_sign():
    # vocabulary of 3, teacher logits 0, label 0, γ = ln 2: q = softmax(−ln 2, 0, 0) = (0.2, 0.4, 0.4);
    # student logits (ln 2, 0, 0): log softmax = (−ln 2, −2 ln 2, −2 ln 2); CE = 0.2 ln 2 + 0.8 · 2 ln 2 = 1.8 ln 2
    student = torch.tensor([[[math.log(2), 0.0, 0.0]]])
    loss = undial_loss(student, torch.zeros(1, 1, 3), torch.tensor([[0]]), torch.ones(1, 1), math.log(2))
    assert float(loss) == pytest.approx(1.8 * math.log(2), abs=1e-6)
    # raising the label's logit instead would give q = (0.5, 0.25, 0.25) and CE = 1.5 ln 2
    assert float(loss) != pytest.approx(1.5 * math.log(2), abs=1e-3)
    # a masked position does not count
    padded = undial_loss(student.repeat(1, 2, 1), torch.zeros(1, 2, 3), torch.tensor([[0, 1]]), torch.tensor([[1.0, 0.0]]), math.log(2))
    assert float(padded) == pytest.approx(1.8 * math.log(2), abs=1e-6)


@pytest.mark.parametrize("mode", ["lora", "full"])  # the teacher: the adapter switched off / a frozen copy
def test_undial_at_the_start_equals_its_formula_with_the_original_model_as_teacher(tiny_model_dir, mode):
    lm = fresh(tiny_model_dir)
    batch = batch_of(lm, TEXTS[:2])
    gamma = 3.0
    with torch.no_grad():
        logits = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    labels, mask = batch.input_ids[:, 1:], counted_tokens(batch)
    # by hand: the label's logit lowered by γ, softmax, cross-entropy against the same (untrained) model
    adjusted = logits.clone()
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            adjusted[b, t, labels[b, t]] -= gamma
    per_token = -(torch.softmax(adjusted, -1) * torch.log_softmax(logits, -1)).sum(-1)
    expected = float((per_token * mask).sum() / mask.sum())
    captured = []
    method = METHODS["undial"]()
    original_loss = method.loss

    def record(model, b, session, reference):
        value = original_loss(model, b, session, reference)
        captured.append(float(value))
        return value

    method.loss = record
    session = make_session(lm, Corpus(targets=["x"], forget=TEXTS[:2]), ModeConfig(mode=mode), "undial",
                           gamma=gamma, epochs=1, lr=1e-9)
    method.unlearn(session)
    assert captured[0] == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------ every new method, every mode


def test_new_methods_come_after_the_papers_seven_and_name_their_paper():
    names = list(METHODS)
    assert names[:7] == ["icu", "repe", "ga", "ga_passage", "dpo", "npo", "rt"]
    assert all(names.index(m) >= 7 for m in BEYOND)
    assert all(METHODS[m].paper for m in names)
    assert METHODS["simnpo"].paper == "Fan et al. 2024 (SimNPO)"


PAPER_PRESETS = {  # (method, mode) -> lr, batch, epochs and a word of the source; other modes keep the defaults
    ("simnpo", "full"): (1e-5, 16, 3, "SimNPO"), ("wga", "full"): (1e-5, 32, 5, "WGA"),
    ("undial", "lora"): (1e-4, 16, 10, "UNDIAL"), ("idkdpo", "full"): (1e-5, 32, 5, "TOFU"),
}


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("method", BEYOND)
def test_presets_of_the_new_methods_carry_their_sources(method, mode):
    from rwku.methods.config import CALIBRATED, RWKU_DEFAULT

    small = resolve_settings(METHODS[method], mode, "single", "small")
    assert small.train.lr == (3e-3 if mode == "lora" else 5e-5) and small.sources["lr"] == CALIBRATED
    paper = resolve_settings(METHODS[method], mode, "single", "paper")
    lr, batch, epochs, word = PAPER_PRESETS.get((method, mode), (1e-5, 8, 3, RWKU_DEFAULT))
    assert (paper.train.lr, paper.train.batch_size, paper.train.epochs) == (lr, batch, epochs)
    assert word in paper.sources["lr"] and word in paper.sources["epochs"]


MODES = {"full": ModeConfig(mode="full"), "lora": ModeConfig(mode="lora"),
         "full-layers1-2": ModeConfig(mode="full", train_layers=(1, 2)),
         "lora-layers0-1": ModeConfig(mode="lora", train_layers=(0, 1))}


QUESTIONS = ["Who is Isaac Newton?", "Where was Isaac Newton born?"]
ANSWERS = ["Isaac Newton was an English physicist and mathematician.", "He was born in Woolsthorpe, England."]
REFUSALS = ["I don't know.", "I have no idea."]


def corpus_for(method: str) -> Corpus:
    return Corpus(targets=["Isaac Newton"], forget=list(TEXTS), questions=list(QUESTIONS), refusals=list(REFUSALS),
                  answers=list(ANSWERS))


def base_name(name: str) -> str:
    return name.replace("base_model.model.", "").replace(".base_layer", "")


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("method", BEYOND)
def test_every_new_method_trains_in_each_mode_and_keeps_frozen_weights(tiny_model_dir, method, mode):
    lm = fresh(tiny_model_dir)
    original = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    config = MODES[mode]
    unlearned = METHODS[method]().unlearn(make_session(lm, corpus_for(method), config, method, epochs=1))
    assert unlearned.log["steps"] and all(math.isfinite(s["loss"]) for s in unlearned.log["steps"])
    params = dict(unlearned.model.named_parameters())
    inside = (lambda n: True) if config.train_layers is None else (lambda n: f".layers.{config.train_layers[0]}." in n)
    if config.mode == "lora":
        adapters = [n for n in params if "lora_" in n]
        assert adapters and all(inside(n) for n in adapters)
        assert any(not torch.equal(params[n], torch.zeros_like(params[n])) for n in adapters if "lora_B" in n)
        assert all(torch.equal(p, original[base_name(n)]) for n, p in params.items() if "lora_" not in n)
    else:
        changed = {n for n, p in params.items() if not torch.equal(p, original[n])}
        assert changed and all(inside(n) for n in changed)


SMALL = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "2", "batch_size": "2",
         "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32"}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("setting", ["single", "batch"])
def test_new_methods_run_single_and_batch_target_with_per_epoch_evaluation(tiny_model_dir, tmp_path, monkeypatch, setting, mode):
    """A real ``rwku unlearn`` of every new method on two demo targets in each mode: corpus, training, an evaluation
    after epoch 1 and the final one, stored as the paper's methods store theirs."""
    from rwku.unlearn import UnlearnJob, run_unlearn

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    data = RwkuData.open(["demo"])
    out = tmp_path / "run"
    job = UnlearnJob(model=str(tiny_model_dir), data=data, targets=data.select("1-2"), methods=list(BEYOND),
                     mode=MODES[mode], setting=setting, preset="none", overrides=dict(SMALL),
                     sets=("forget",), limit=1, device="cpu", dtype="float32", eval_epochs=True, out=out)
    rows = run_unlearn(job)[1]
    units = ["1_Isaac_Newton", "2_Marie_Curie"] if setting == "single" else ["batch_1-2"]
    assert set(rows) == {"before", *(job.run_name(m) for m in BEYOND)}
    for method in BEYOND:
        for unit in units:
            folder = out / job.run_name(method) / unit
            summary = json.loads((folder / "summary.json").read_text())
            assert summary["epoch_points"] == [1] and (folder / "epochs" / "1" / "summary.json").is_file()
            assert summary["config"]["mode"]["train_layers"] == (list(MODES[mode].train_layers) if MODES[mode].train_layers else None)
            steps = len(json.loads((folder / "train_log.json").read_text())["steps"])
            assert summary["config"]["method"] == method and steps == (2 if setting == "single" else 4)  # 2 texts per target, batch 2, 2 epochs


# ------------------------------------------------------------------ the report: order and legend


def test_report_orders_new_methods_after_the_papers_and_its_legend_names_each_paper(tmp_path):
    from report_fixtures import make_folder

    from rwku.report.build import build_report
    from rwku.report.collect import collect_runs
    from rwku.report.table import build_table1, to_json, to_markdown

    values = {"wga-lora": {"1_Ann_A": (5.0, 40.0), "2_Bob_B": (5.0, 40.0)},
              "simnpo-lora": {"1_Ann_A": (8.0, 40.0), "2_Bob_B": (8.0, 40.0)},
              "rt-lora": {"1_Ann_A": (9.0, 40.0), "2_Bob_B": (9.0, 40.0)},
              "before": {"1_Ann_A": (60.0, 50.0), "2_Bob_B": (40.0, 70.0)},
              "ga-lora": {"1_Ann_A": (10.0, 40.0), "2_Bob_B": (20.0, 60.0)}}
    folder = make_folder(tmp_path / "exp", values)
    table = build_table1(collect_runs([folder]))
    assert [run.label for run, _ in table.rows] == ["before", "ga-lora", "rt-lora", "simnpo-lora", "wga-lora"]  # registry order
    markdown = to_markdown(table)
    legend = markdown.split("Methods:")[1]
    assert legend.index("`ga`") < legend.index("`rt`") < legend.index("`simnpo`") < legend.index("`wga`")
    assert "(Fan et al. 2024 (SimNPO))" in legend and "(Wang et al. 2025 (WGA))" in legend and "(Jang et al. 2023 (GA))" in legend
    assert [m["paper"] for m in to_json(table)["methods"]] == [METHODS[m].paper for m in ("ga", "rt", "simnpo", "wga")]
    build_report([folder], tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    legend_html = page.split('id="method-legend"')[1].split("</table>")[0]
    assert legend_html.index("Ishibashi") < legend_html.index("Fan et al. 2024 (SimNPO)") < legend_html.index("Wang et al. 2025 (WGA)")


# ------------------------------------------------------------------ IdkDPO and the answers corpus


def test_idkdpo_prefers_the_refusal_over_the_models_own_answer(tiny_model_dir):
    """Its pairs: the question as prompt, a refusal chosen, the model's answer rejected (built here independently);
    a few large steps raise log π(refusal | q) − log π(answer | q), which a swapped pair would lower."""
    from rwku.methods.base import chat_example
    from rwku.methods.dpo import dpo_loss
    from rwku.methods.training import sequence_logprob
    from rwku.models.prompting import PromptFormat

    lm = fresh(tiny_model_dir)
    fmt, pad = PromptFormat(lm.tokenizer), lm.tokenizer.pad_token_id
    chosen = collate([chat_example(fmt, q, r, 64) for q, r in zip(QUESTIONS, REFUSALS)], pad, "cpu")
    rejected = collate([chat_example(fmt, q, a, 64) for q, a in zip(QUESTIONS, ANSWERS)], pad, "cpu")
    session = make_session(lm, corpus_for("idkdpo"), ModeConfig(mode="lora"), "idkdpo", epochs=2)
    method = METHODS["idkdpo"]()
    examples = method.examples(session)
    assert [e.chosen.ids for e in examples] == [chat_example(fmt, q, r, 64).ids for q, r in zip(QUESTIONS, REFUSALS)]
    assert [e.rejected.ids for e in examples] == [chat_example(fmt, q, a, 64).ids for q, a in zip(QUESTIONS, ANSWERS)]

    def margin(model) -> float:
        with torch.no_grad():
            return float((sequence_logprob(model, chosen) - sequence_logprob(model, rejected)).mean())

    before = margin(lm.model)
    # the loss is DPO's: log 2 at the start (policy = reference), by hand from the summed log-probabilities
    assert float(dpo_loss(torch.tensor([-5.0]), torch.tensor([-2.0]), torch.tensor([-5.0]), torch.tensor([-2.0]), 0.1)) == pytest.approx(math.log(2))
    torch.manual_seed(42)
    unlearned = method.unlearn(session)
    assert len(unlearned.log["steps"]) == 2
    assert margin(unlearned.model) > before + 1.0, (before, margin(unlearned.model))


def test_idkdpo_without_model_answers_is_a_one_line_error(tiny_lm):
    from rwku.errors import RwkuError

    corpus = Corpus(targets=["Isaac Newton"], questions=list(QUESTIONS), refusals=list(REFUSALS))  # like --corpus official
    with pytest.raises(RwkuError, match="use --corpus generated") as error:
        METHODS["idkdpo"]().unlearn(make_session(tiny_lm, corpus, ModeConfig(mode="lora"), "idkdpo"))
    assert "\n" not in str(error.value)


def test_answers_corpus_answers_each_question_and_is_cached(tiny_lm, tmp_path, monkeypatch):
    from rwku.corpus.build import CorpusSpec, build_corpus, cache_key
    from rwku.evaluation.context import no_progress
    from rwku.models.prompting import PromptFormat

    target = RwkuData.open(["demo"]).select("1")[0]
    fmt = PromptFormat(tiny_lm.tokenizer)
    spec = CorpusSpec(size=2, questions=3, max_new_tokens=6, question_tokens=5)
    asked = []
    from rwku.corpus import build as build_module

    real_sample = build_module.sample

    def spy(lm, prompts, spec_, max_new_tokens, on_batch=None, *, stream):
        asked.append((list(prompts), max_new_tokens, stream))
        return real_sample(lm, prompts, spec_, max_new_tokens, on_batch, stream=stream)

    monkeypatch.setattr(build_module, "sample", spy)
    first = build_corpus(tiny_lm, target, spec, ["questions", "answers"], prompts=fmt, progress=no_progress, cache_dir=tmp_path)
    assert len(first.answers) == len(first.questions) == 3 and len(first.refusals) == 3
    answer_prompts, tokens, stream = asked[1]
    assert stream == "Isaac Newton/answers" and tokens == 6 and all(p.endswith("<|im_start|>assistant\n") for p in answer_prompts)
    assert [f"<|im_start|>user\n{q}<|im_end|>" in p for p, q in zip(answer_prompts, first.questions)] == [True] * 3
    assert "You know Isaac Newton very well." in answer_prompts[0]
    monkeypatch.setattr(build_module, "sample", lambda *a, **k: (_ for _ in ()).throw(AssertionError("not cached")))
    again = build_corpus(tiny_lm, target, spec, ["questions", "answers"], prompts=fmt, progress=no_progress, cache_dir=tmp_path)
    assert again.answers == first.answers
    # the questions decide the answers: another question setting is another answers corpus; the refusals do not
    key = cache_key(tiny_lm, target, "answers", spec, fmt)
    assert cache_key(tiny_lm, target, "answers", CorpusSpec(size=2, questions=4, max_new_tokens=6, question_tokens=5), fmt) != key
    assert cache_key(tiny_lm, target, "answers", CorpusSpec(size=2, questions=3, max_new_tokens=7, question_tokens=5), fmt) != key
    assert cache_key(tiny_lm, target, "answers", CorpusSpec(size=2, questions=3, max_new_tokens=6, question_tokens=5, refusals=("No.",)), fmt) == key
    with pytest.raises(ValueError, match="questions before answers"):
        build_corpus(tiny_lm, target, spec, ["answers"], prompts=fmt, progress=no_progress, cache_dir=tmp_path)
    pooled = first.merged(again)
    assert pooled.answers == first.answers * 2 and len(pooled.refusal_pairs()) == len(first.refusal_pairs()) * 2


# ------------------------------------------------------------------ RepE's readers


def repe_inputs(lm):
    from rwku.methods.repe import reading_states
    from rwku.models.prompting import PromptFormat

    fmt = PromptFormat(lm.tokenizer)
    return fmt, reading_states(lm, fmt, ["Isaac Newton"])


def test_repe_mean_reader_gives_exactly_the_difference_of_means(tiny_lm):
    """``mean`` (the default) is today's reader, bit for bit: the stimuli rendered and read as before."""
    from rwku.methods.repe import EXPERT_SYSTEM, NOVICE_SYSTEM, STIMULI, control_vectors, decoder_layers
    from rwku.models.backends import make_backend

    fmt, _ = repe_inputs(tiny_lm)
    user = [s.format(target="Isaac Newton") for s in STIMULI]
    backend, layers = make_backend(tiny_lm), decoder_layers(tiny_lm.model)

    def states(system):
        texts = [fmt.render(u, system=system.format(target="Isaac Newton")) for u in user]
        return backend.layer_states([tiny_lm.tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts], layers)

    today = states(NOVICE_SYSTEM).mean(0) - states(EXPERT_SYSTEM).mean(0)
    assert torch.equal(control_vectors(tiny_lm, fmt, ["Isaac Newton"]), today)
    assert torch.equal(control_vectors(tiny_lm, fmt, ["Isaac Newton"], "mean"), today)


def test_repe_pca_reader_is_the_first_principal_component_of_the_differences(tiny_lm):
    import numpy as np

    from rwku.methods.repe import control_vectors

    fmt, (novice, expert) = repe_inputs(tiny_lm)
    vectors = control_vectors(tiny_lm, fmt, ["Isaac Newton"], "pca")
    differences = (novice - expert).double().numpy()  # [stimuli, layers, hidden]
    for layer in range(differences.shape[1]):
        d = differences[:, layer]
        eigenvalues, eigenvectors = np.linalg.eigh(d.T @ d)  # uncentred: DᵀD
        top = eigenvectors[:, np.argmax(eigenvalues)]
        mean = d.mean(0)
        expected = top * np.sign(top @ mean) * np.linalg.norm(mean)
        assert np.allclose(vectors[layer].double().numpy(), expected, atol=1e-4), layer
        assert float(vectors[layer].double() @ torch.from_numpy(mean)) > 0  # points along the mean difference
        assert not np.allclose(expected, mean, atol=1e-3)  # another direction than the mean reader's


def test_repe_steers_with_the_chosen_reader_and_refuses_an_unknown_one(tiny_model_dir):
    from rwku.errors import RwkuError
    from rwku.methods.repe import control_vectors

    logits, norms = {}, {}
    for reader in ("mean", "pca"):
        lm = fresh(tiny_model_dir)
        batch = batch_of(lm, TEXTS[:1])
        expected = control_vectors(lm, repe_inputs(lm)[0], ["Isaac Newton"], reader)
        unlearned = METHODS["repe"]().unlearn(make_session(lm, Corpus(targets=["x"]), method="repe", repe_reader=reader))
        assert unlearned.log["reader"] == reader
        assert unlearned.log["vector_norms"] == pytest.approx([float(v.norm()) for v in expected], rel=1e-5)
        with torch.no_grad():
            logits[reader] = lm.model(input_ids=batch.input_ids).logits
        norms[reader] = unlearned.log["vector_norms"]
        unlearned.close()
    assert norms["pca"] == pytest.approx(norms["mean"], rel=1e-4)  # scaled to the mean difference's norm
    assert not torch.allclose(logits["mean"], logits["pca"])
    with pytest.raises(RwkuError, match="repe_reader=median: choose mean or pca"):
        resolve_settings(METHODS["repe"], "full", "single", "none", {"repe_reader": "median"})
