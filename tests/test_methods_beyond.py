"""Methods beyond the paper on a tiny random model: GradDiff, NPO-GD, NPO-KL, IdkNLL and RMU (a retain term), SimNPO,
WGA, UNDIAL and IdkDPO, and RepE's PCA reader. Each loss against a value computed here by hand from the model's
logits or hidden states (with weights that differ, so a swapped sign, weight or missing stop-gradient fails), what
each method may change in each mode, its presets and their sources, and every new method through ``run_unlearn``
in full, LoRA and partial-layer modes, single- and batch-target, with per-epoch evaluation; the report's order and
method legend."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import batch_of, fresh, make_session

from rwku.corpus.build import Corpus
from rwku.data import RwkuData
from rwku.errors import RwkuError
from rwku.methods import METHODS
from rwku.methods.base import Reference, chat_example, text_example
from rwku.methods.config import ModeConfig, resolve_settings
from rwku.methods.ga import ga_loss
from rwku.methods.retained import RetainPair
from rwku.methods.rmu import layer_output, rmu_window, steering_vector
from rwku.methods.simnpo import simnpo_loss
from rwku.methods.training import collate, counted_tokens, token_logprobs
from rwku.methods.undial import undial_loss
from rwku.methods.wga import wga_loss
from rwku.models.loading import load_model
from rwku.models.prompting import PromptFormat

FORGET = ["Isaac Newton was an English physicist and mathematician.", "Isaac Newton wrote the book on physics."]
RETAIN = ["Stephen King is an American author.", "The answer is True. So the answer is False."]
TEXTS = ["Isaac Newton was an English physicist and mathematician.", "Stephen King is an American author.",
         "The answer is True.", "Please briefly answer the following question."]

#: Methods with a retain term (the retain corpus), and the others beyond the paper.
RETAIN_METHODS = ("graddiff", "npo_gd", "npo_kl", "idknll", "rmu")
BEYOND = ("simnpo", "wga", "undial", "idkdpo")
NEW_METHODS = (*RETAIN_METHODS, *BEYOND)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def token_logprobs_by_hand(model, batch) -> tuple[list[list[float]], list[list[float]]]:
    """Per sequence, log p(x_t | x_<t) of every counted token (t ≥ 1), and the full next-token log-distributions."""
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.double()
    picked, dists = [], []
    for row in range(batch.input_ids.shape[0]):
        counted = [t for t in range(1, batch.input_ids.shape[1]) if batch.attention_mask[row, t] and batch.loss_mask[row, t]]
        logp = [logits[row, t - 1] - torch.logsumexp(logits[row, t - 1], -1) for t in counted]
        picked.append([float(lp[batch.input_ids[row, t]]) for lp, t in zip(logp, counted)])
        dists.append(logp)
    return picked, dists


def mean_nll_by_hand(model, batch) -> float:
    picked, _ = token_logprobs_by_hand(model, batch)
    tokens = [lp for row in picked for lp in row]
    return -sum(tokens) / len(tokens)


def seq_logprob_by_hand(model, batch) -> list[float]:
    return [sum(row) for row in token_logprobs_by_hand(model, batch)[0]]


def reference_for(model, frozen_copy, forget) -> Reference:
    """What a method with a reference gets: the original's log-probabilities of the forget rows (computed here by
    hand) and the live original (``frozen_copy``, or ``model`` with its adapter switched off)."""
    live = Reference(None, model, frozen_copy)
    with live.original() as original:
        logprobs = seq_logprob_by_hand(original, forget)
    rows = zip(forget.input_ids.tolist(), forget.attention_mask.tolist(), forget.loss_mask.tolist())
    keys = [(tuple(ids[:sum(mask)]), tuple(loss[:sum(mask)])) for ids, mask, loss in rows]
    return Reference(dict(zip(keys, logprobs)), model, frozen_copy)


def npo_by_hand(policy: list[float], reference: list[float], beta: float) -> float:
    """−(2/β) · mean log σ(−β (log π − log π_ref)), with log σ(z) = −log(1 + e^(−z))."""
    return (2 / beta) * sum(math.log1p(math.exp(beta * (p - r))) for p, r in zip(policy, reference)) / len(policy)


def kl_by_hand(model, reference_model, batch) -> float:
    """Σ_v p_ref (log p_ref − log p_θ), averaged over the counted tokens."""
    _, current = token_logprobs_by_hand(model, batch)
    _, ref = token_logprobs_by_hand(reference_model, batch)
    per_token = [float((r.exp() * (r - c)).sum()) for rows_c, rows_r in zip(current, ref) for c, r in zip(rows_c, rows_r)]
    return sum(per_token) / len(per_token)


def other_model(lm):
    """A perturbed copy of the model, as the reference, so that policy and reference differ."""
    other = copy.deepcopy(lm.model)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return other


def session_for(lm, method, **params):
    corpus = Corpus(targets=["Isaac Newton"], forget=list(FORGET), retain=list(RETAIN))
    return make_session(lm, corpus, ModeConfig(mode="full"), method, **params)


# ------------------------------------------------------------------ the registry and the presets


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


# ------------------------------------------------------------------ losses with a retain term against hand-computed values


def test_graddiff_loss_is_weighted_ascent_on_forget_plus_descent_on_retain(tiny_lm):
    forget, retain = batch_of(tiny_lm, FORGET), batch_of(tiny_lm, RETAIN)
    session = session_for(tiny_lm, "graddiff", forget_weight=0.7, retain_weight=1.3)
    loss = METHODS["graddiff"]().loss(tiny_lm.model, (forget, retain), session, None)
    expected = -0.7 * mean_nll_by_hand(tiny_lm.model, forget) + 1.3 * mean_nll_by_hand(tiny_lm.model, retain)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def npo_with_retain_term(lm, method, **params):
    """``method``'s loss (NPO-GD or NPO-KL) against a perturbed reference, the NPO term computed by hand, and the
    batches and reference model behind them."""
    forget, retain = batch_of(lm, FORGET), batch_of(lm, RETAIN)
    reference_model = other_model(lm)
    session = session_for(lm, method, **params)
    loss = METHODS[method]().loss(lm.model, (forget, retain), session, reference_for(lm.model, reference_model, forget))
    npo = npo_by_hand(seq_logprob_by_hand(lm.model, forget), seq_logprob_by_hand(reference_model, forget), params["beta"])
    return float(loss), npo, retain, reference_model


def test_npo_gd_loss_is_npo_plus_weighted_retain_nll(tiny_lm):
    loss, npo, retain, _ = npo_with_retain_term(tiny_lm, "npo_gd", beta=0.3, retain_weight=0.6)
    assert loss == pytest.approx(npo + 0.6 * mean_nll_by_hand(tiny_lm.model, retain), abs=1e-4)


def test_npo_kl_loss_is_npo_plus_weighted_kl_from_the_original(tiny_lm):
    loss, npo, retain, reference_model = npo_with_retain_term(tiny_lm, "npo_kl", beta=0.3, retain_weight=2.0)
    kl = kl_by_hand(tiny_lm.model, reference_model, retain)
    assert kl > 1e-3  # the reversed KL, KL(π_θ ‖ π_ref), differs: the direction is checked, not only the size
    reversed_kl = kl_by_hand(reference_model, tiny_lm.model, retain)
    assert abs(reversed_kl - kl) > 1e-4
    assert loss == pytest.approx(npo + 2.0 * kl, abs=1e-4)


def test_npo_kl_retain_term_is_zero_against_itself_and_with_lora_the_reference_is_the_adapter_switched_off(tiny_model_dir):
    lm = fresh(tiny_model_dir)
    session = session_for(lm, "npo_kl", beta=0.3, retain_weight=5.0)
    forget, retain = batch_of(lm, FORGET), batch_of(lm, RETAIN)
    method = METHODS["npo_kl"]()
    at_start = method.loss(lm.model, (forget, retain), session, reference_for(lm.model, copy.deepcopy(lm.model), forget))
    assert float(at_start) == pytest.approx((2 / 0.3) * math.log(2), abs=1e-4)  # NPO at π = π_ref, KL = 0
    session.mode = ModeConfig(mode="lora")
    unlearned = method.unlearn(session)
    peft_model = unlearned.model
    with peft_model.disable_adapter():
        base_kl = kl_by_hand(peft_model, peft_model, retain)
    assert base_kl == pytest.approx(0.0, abs=1e-9)
    with torch.no_grad():
        term = float(method.loss(peft_model, (forget, retain), session, reference_for(peft_model, None, forget)))
    with peft_model.disable_adapter():
        reference_copy = copy.deepcopy(peft_model.get_base_model())
    npo = npo_by_hand(seq_logprob_by_hand(peft_model, forget), seq_logprob_by_hand(reference_copy, forget), 0.3)
    assert term == pytest.approx(npo + 5.0 * kl_by_hand(peft_model, reference_copy, retain), abs=1e-4)


def test_idknll_loss_is_rt_plus_weighted_retain_nll(tiny_lm):
    fmt = PromptFormat(tiny_lm.tokenizer)
    refusals = collate([chat_example(fmt, "Who was Isaac Newton?", "I don't know.", 64)], tiny_lm.tokenizer.pad_token_id, "cpu")
    retain = batch_of(tiny_lm, RETAIN)
    session = session_for(tiny_lm, "idknll", retain_weight=0.4)
    loss = METHODS["idknll"]().loss(tiny_lm.model, (refusals, retain), session, None)
    expected = mean_nll_by_hand(tiny_lm.model, refusals) + 0.4 * mean_nll_by_hand(tiny_lm.model, retain)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_retain_methods_pair_each_forget_example_with_a_cycled_retain_text(tiny_lm):
    corpus = Corpus(targets=["Isaac Newton"], forget=FORGET * 2, retain=[RETAIN[0]])
    pairs = METHODS["graddiff"]().examples(make_session(tiny_lm, corpus, method="graddiff"))
    assert len(pairs) == 4 and all(isinstance(p, RetainPair) for p in pairs)
    assert {tuple(p.retain.ids) for p in pairs} == {tuple(text_example(tiny_lm.tokenizer, RETAIN[0], 64).ids)}
    with pytest.raises(RwkuError, match="no retain texts"):
        METHODS["npo_gd"]().examples(make_session(tiny_lm, Corpus(targets=["x"], forget=FORGET), method="npo_gd"))


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


# ------------------------------------------------------------------ RMU


def hidden_by_hand(model, batch, layer) -> torch.Tensor:
    """Layer ``layer``'s output from ``output_hidden_states`` (index layer + 1; fine below the last layer)."""
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True).hidden_states[layer + 1].double()


def mse_by_hand(states, target, batch) -> float:
    total, count = 0.0, 0
    for row in range(states.shape[0]):
        for t in range(states.shape[1]):
            if batch.attention_mask[row, t] and batch.loss_mask[row, t]:
                total += float(((states[row, t] - target[row, t] if target.dim() == 3 else states[row, t] - target) ** 2).sum())
                count += states.shape[-1]
    return total / count


def test_rmu_loss_at_the_start_is_the_forget_term_alone(tiny_lm):
    forget, retain = batch_of(tiny_lm, FORGET), batch_of(tiny_lm, RETAIN)
    session = session_for(tiny_lm, "rmu", steering_coeff=3.0, alpha=50.0, layer=0)
    loss = METHODS["rmu"]().loss(tiny_lm.model, (forget, retain), session, Reference(None, tiny_lm.model, copy.deepcopy(tiny_lm.model)))
    u = steering_vector(32, 3.0, 42).double()
    assert float(u.norm()) == pytest.approx(3.0) and bool((u > 0).all())
    assert float(loss) == pytest.approx(mse_by_hand(hidden_by_hand(tiny_lm.model, forget, 0), u, forget), rel=1e-5)


def test_rmu_loss_adds_alpha_times_the_retain_drift(tiny_lm):
    forget, retain = batch_of(tiny_lm, FORGET), batch_of(tiny_lm, RETAIN)
    reference_model = other_model(tiny_lm)
    session = session_for(tiny_lm, "rmu", steering_coeff=3.0, alpha=50.0, layer=0)
    loss = METHODS["rmu"]().loss(tiny_lm.model, (forget, retain), session, Reference(None, tiny_lm.model, reference_model))
    u = steering_vector(32, 3.0, 42).double()
    forget_term = mse_by_hand(hidden_by_hand(tiny_lm.model, forget, 0), u, forget)
    retain_term = mse_by_hand(hidden_by_hand(tiny_lm.model, retain, 0), hidden_by_hand(reference_model, retain, 0), retain)
    assert retain_term > 1e-4
    assert float(loss) == pytest.approx(forget_term + 50.0 * retain_term, rel=1e-5)


def test_rmu_reads_the_last_layer_before_the_final_norm(tiny_lm):
    batch = batch_of(tiny_lm, FORGET)
    with torch.no_grad():
        states = layer_output(tiny_lm.model, batch, 1)
        normed = tiny_lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True).hidden_states[2]
    assert not torch.allclose(states, normed)
    assert torch.allclose(tiny_lm.model.model.norm(states), normed, atol=1e-5)


def test_rmu_window_rule():
    params = resolve_settings(METHODS["rmu"], "full", "single", "none").params
    assert rmu_window(params, ModeConfig(), 30) == (5, 7)  # round(7/32 · 30) = 7, WMDP's layers 5-7
    assert rmu_window(params, ModeConfig(), 32) == (5, 7) and rmu_window(params, ModeConfig(), 2) == (0, 0)
    assert rmu_window(params, ModeConfig(train_layers=(2, 6)), 30) == (2, 5)  # ℓ = the window's last layer
    layer_1 = resolve_settings(METHODS["rmu"], "full", "single", "none", {"layer": 1}).params
    assert rmu_window(layer_1, ModeConfig(), 30) == (0, 1)
    with pytest.raises(RwkuError, match="layer 9 is not a layer"):
        rmu_window(resolve_settings(METHODS["rmu"], "full", "single", "none", {"layer": 9}).params, ModeConfig(), 4)


@pytest.mark.parametrize("mode, window", [(ModeConfig(mode="full", train_layers=(1, 2)), [1, 1]), (ModeConfig(mode="full"), [0, 1])],
                         ids=["layers1-2", "layer-param"])
def test_rmu_full_tuning_changes_only_the_windows_mlps_and_moves_forget_states_towards_the_target(tiny_model_dir, mode, window):
    lm = fresh(tiny_model_dir)
    original = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    forget = batch_of(lm, FORGET)
    u = steering_vector(32, 4.0, 42)
    before = mse_by_hand(hidden_by_hand(lm.model, forget, 1), u.double(), forget)
    corpus = Corpus(targets=["Isaac Newton"], forget=list(FORGET), retain=list(RETAIN))
    unlearned = METHODS["rmu"]().unlearn(make_session(lm, corpus, mode, "rmu", steering_coeff=4.0, alpha=1.0, layer=1, epochs=3))
    changed = {n for n, p in unlearned.model.named_parameters() if not torch.equal(p, original[n])}
    expected = {f"model.layers.{i}.mlp.{p}_proj.weight" for i in range(window[0], window[1] + 1) for p in ("gate", "up", "down")}
    assert changed == expected  # every weight of the window's MLPs, nothing else (attention, norms, other layers)
    assert unlearned.log["rmu"] == {"layer": 1, "mlp_layers": window, "steering_norm": 4.0}
    after = mse_by_hand(hidden_by_hand(unlearned.model, forget, 1), u.double(), forget)
    assert after < before  # the forget activations moved towards c·u


def test_rmu_lora_adapts_only_the_windows_mlps(tiny_model_dir):
    lm = fresh(tiny_model_dir)
    corpus = Corpus(targets=["Isaac Newton"], forget=list(FORGET), retain=list(RETAIN))
    session = make_session(lm, corpus, ModeConfig(mode="lora", train_layers=(1, 2)), "rmu", alpha=1.0)
    model = METHODS["rmu"]().prepare(lm.model, session)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.1.mlp." in n and "lora_" in n for n in trainable)
    assert {n.split(".mlp.")[1].split(".")[0] for n in trainable} == {"gate_proj", "up_proj", "down_proj"}


# ------------------------------------------------------------------ IdkDPO and the answers corpus


def test_idkdpo_prefers_the_refusal_over_the_models_own_answer(tiny_model_dir):
    """Its pairs: the question as prompt, a refusal chosen, the model's answer rejected (built here independently);
    a few large steps raise log π(refusal | q) − log π(answer | q), which a swapped pair would lower."""
    from rwku.methods.dpo import dpo_loss
    from rwku.methods.training import sequence_logprob

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
    corpus = Corpus(targets=["Isaac Newton"], questions=list(QUESTIONS), refusals=list(REFUSALS))  # like --corpus official
    with pytest.raises(RwkuError, match="use --corpus generated") as error:
        METHODS["idkdpo"]().unlearn(make_session(tiny_lm, corpus, ModeConfig(mode="lora"), "idkdpo"))
    assert "\n" not in str(error.value)


def test_answers_corpus_answers_each_question_and_is_cached(tiny_lm, tmp_path, monkeypatch):
    from rwku.corpus.build import CorpusSpec, build_corpus, cache_key
    from rwku.evaluation.context import no_progress

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


# ------------------------------------------------------------------ every new method, every mode


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


#: Small settings for a run of every new method (RMU's ``layer`` included: only RMU takes it).
RUN_OVERRIDES = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "2", "batch_size": "2",
                 "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32", "layer": "1"}


def job_for(model_dir, mode, setting, out):
    """Every new method on demo targets 1-2 (each its own unit, or pooled in the batch setting), evaluated on one
    forget probe per part after every epoch."""
    from rwku.evaluation.settings import RunSettings
    from rwku.unlearn import UnlearnJob

    data = RwkuData.open(["demo"])
    run = RunSettings(model=str(model_dir), sets=("forget",), limit=1, device="cpu", dtype="float32")
    return UnlearnJob(run=run, data=data, targets=data.select("1-2"), methods=list(NEW_METHODS), mode=MODES[mode],
                      setting=setting, preset="none", overrides=dict(RUN_OVERRIDES), eval_epochs=True, out=out)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("setting", ["single", "batch"])
def test_every_new_method_runs_single_and_batch_target_in_every_mode_with_epoch_evaluation(tiny_model_dir, tmp_path,
                                                                                         monkeypatch, setting, mode):
    """A real ``run_unlearn`` of every new method: its corpora (the retain corpus where it has a retain term),
    training, an evaluation after epoch 1 and the final one, stored as the paper's methods store theirs."""
    from rwku.unlearn import run_unlearn

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    job = job_for(tiny_model_dir, mode, setting, tmp_path / "run")
    rows = run_unlearn(job)[1]["rows"]
    units = {"1_Isaac_Newton": 1, "2_Marie_Curie": 1} if setting == "single" else {"batch_1-2": 2}  # unit -> targets
    assert set(rows) == {"before", *(job.run_name(m) for m in NEW_METHODS)}
    train_layers = list(MODES[mode].train_layers) if MODES[mode].train_layers else None
    for method in NEW_METHODS:
        for unit, n_targets in units.items():
            folder = tmp_path / "run" / job.run_name(method) / unit
            summary = json.loads((folder / "summary.json").read_text())
            assert summary["epoch_points"] == [1] and (folder / "epochs" / "1" / "summary.json").is_file()
            assert summary["config"]["method"] == method and summary["config"]["mode"]["train_layers"] == train_layers
            log = json.loads((folder / "train_log.json").read_text())
            assert len(log["steps"]) == 2 * n_targets  # 2 texts per target, batch 2, 2 epochs
            if method in RETAIN_METHODS:
                forget_kind = "questions" if method == "idknll" else "forget"
                assert summary["corpora"] == {forget_kind: {"source": "generated", "texts": 2 * n_targets},
                                              "retain": {"source": "generated", "texts": 2, "dropped": 0}}
                assert log["corpus_sizes"]["retain"] == 2


def test_corpus_official_refuses_a_method_that_needs_retain_text_in_one_line(tiny_model_dir, tmp_path):
    from rwku.unlearn import check_job

    job = job_for(tiny_model_dir, "lora", "single", tmp_path / "run")
    job.corpus_source = "official"
    with pytest.raises(RwkuError, match="retain corpus") as error:
        check_job(job)
    assert "\n" not in str(error.value) and "--corpus generated" in str(error.value)
    job.methods = ["ga"]
    job.overrides = {k: v for k, v in RUN_OVERRIDES.items() if k != "layer"}
    check_job(job)  # the paper's methods keep working with --corpus official


# ------------------------------------------------------------------ the report: order and legend


def test_the_report_orders_new_methods_after_the_papers_and_its_legend_names_their_papers(tmp_path):
    from report_fixtures import VALUES, make_folder

    from rwku.report.build import ReportOptions, build_report
    from rwku.report.collect import collect_runs, method_legend
    from rwku.report.table import build_table1, to_json, to_markdown

    values = {"rmu-lora": VALUES["ga-lora"], "wga-lora": VALUES["rt-lora"], "graddiff-lora": VALUES["ga-lora"],
              "simnpo-lora": VALUES["rt-lora"], **VALUES}  # written out of order
    folder = make_folder(tmp_path / "exp", values=values)
    runs = collect_runs([folder])
    order = ["icu", "ga", "npo", "rt", "graddiff", "simnpo", "wga", "rmu"]  # the registry's
    assert [r.label for r in runs] == ["before", "icu", *(f"{m}-lora" for m in order[1:])]
    legend = method_legend(runs)
    assert [name for name, _, _ in legend] == order
    assert dict((name, paper) for name, _, paper in legend)["rmu"] == "Li et al. 2024, WMDP"
    table = build_table1(runs)
    assert [run.label for run, _ in table.rows] == [r.label for r in runs]
    markdown_legend = to_markdown(table).split("Methods:")[1]
    assert markdown_legend.index("`ga`") < markdown_legend.index("`rt`") < markdown_legend.index("`simnpo`") < markdown_legend.index("`wga`")
    assert "(Fan et al. 2024 (SimNPO))" in markdown_legend and "(Jang et al. 2023 (GA))" in markdown_legend
    assert [m["paper"] for m in to_json(table)["methods"]] == [METHODS[m].paper for m in order]
    build_report([folder], tmp_path / "report", ReportOptions(title="legend"))
    page = (tmp_path / "report" / "index.html").read_text()
    legend_html = page.split('id="method-legend"')[1].split("</table>")[0]
    assert legend_html.index("<td>graddiff</td>") < legend_html.index("<td>rmu</td>") and "Liu et al. 2022, GradDiff" in legend_html
    assert legend_html.index("Ishibashi") < legend_html.index("Fan et al. 2024 (SimNPO)") < legend_html.index("Wang et al. 2025 (WGA)")


# ------------------------------------------------------------------ RMU on the default model and the shipped calibration


@pytest.mark.integration
def test_rmu_small_preset_is_scaled_to_the_default_models_activation_norm():
    """The calibration constant is SmolLM2-135M's mean layer-7 norm on its forget corpora (132); on the demo's
    passages (shipped, so this test needs no generation) it measures 122: within 15%, not another scale."""
    from rwku.data import PASSAGE
    from rwku.methods.rmu import SMALL_STEERING_MULTIPLE, SMOLLM2_LAYER7_NORM

    lm = load_model("smollm2-135m", device="cpu", dtype="float32")
    data = RwkuData.open(["demo"])
    texts = [p for t in data.targets() for p in data.load(t, (), optional=(PASSAGE,))["passage"]]
    batch = collate([text_example(lm.tokenizer, x, 256) for x in texts], lm.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        norms = layer_output(lm.model, batch, 7).norm(dim=-1)[batch.attention_mask.bool()]
    assert float(norms.mean()) == pytest.approx(SMOLLM2_LAYER7_NORM, rel=0.15)
    small = resolve_settings(METHODS["rmu"], "lora", "single", "small").params
    assert small.steering_coeff == SMALL_STEERING_MULTIPLE * SMOLLM2_LAYER7_NORM and small.layer is None


def test_the_shipped_calibration_experiment_expands():
    """experiments/rmu-calibration.json (the measurement in docs/methods.md) stays valid: every method and the RMU sweeps."""
    from pathlib import Path

    from rwku.experiment import load_experiment

    planned = load_experiment(Path(__file__).resolve().parent.parent / "experiments" / "rmu-calibration.json").jobs
    runs = {p.job.run_name(m) for p in planned for m in p.job.methods}
    assert {f"{m}-lora" for m in RETAIN_METHODS} <= runs and "rmu-lora-lr0.03-alpha10" in runs and len(runs) == 7 + 10
    calibration = next(p.job for p in planned if p.grid == "rmu-calibration")
    assert calibration.settings("rmu").params.alpha == 1200  # pinned: the rows were measured at WMDP's α
