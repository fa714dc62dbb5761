"""Methods beyond the paper (GradDiff, NPO-GD, NPO-KL, IdkNLL, RMU) on a tiny random model: each loss against a value
computed here by hand from the model's logits or hidden states (with weights that differ, so a swapped sign or
weight fails), what RMU may change in each mode, and every new method through ``run_unlearn`` in full, LoRA and
partial-layer modes, single- and batch-target, with per-epoch evaluation."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import make_session

from rwku.corpus.build import Corpus
from rwku.data import RwkuData
from rwku.errors import RwkuError
from rwku.methods import METHODS
from rwku.methods.base import Reference, chat_example, text_example
from rwku.methods.config import ModeConfig, resolve_settings
from rwku.methods.retained import RetainPair
from rwku.methods.rmu import layer_output, rmu_window, steering_vector
from rwku.methods.training import collate
from rwku.models.loading import load_model
from rwku.models.prompting import PromptFormat

FORGET = ["Isaac Newton was an English physicist and mathematician.", "Isaac Newton wrote the book on physics."]
RETAIN = ["Stephen King is an American author.", "The answer is True. So the answer is False."]
NEW_METHODS = ["graddiff", "npo_gd", "npo_kl", "idknll", "rmu"]


def fresh(model_dir):
    return load_model(str(model_dir), device="cpu", dtype="float32")


def batch_of(lm, texts):
    return collate([text_example(lm.tokenizer, t, 64) for t in texts], lm.tokenizer.pad_token_id, "cpu")


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


# ------------------------------------------------------------------ losses against hand-computed values


def test_graddiff_loss_is_weighted_ascent_on_forget_plus_descent_on_retain(tiny_lm):
    forget, retain = batch_of(tiny_lm, FORGET), batch_of(tiny_lm, RETAIN)
    session = session_for(tiny_lm, "graddiff", forget_weight=0.7, retain_weight=1.3)
    loss = METHODS["graddiff"]().loss(tiny_lm.model, (forget, retain), session, None)
    expected = -0.7 * mean_nll_by_hand(tiny_lm.model, forget) + 1.3 * mean_nll_by_hand(tiny_lm.model, retain)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_npo_gd_loss_is_npo_plus_weighted_retain_nll(tiny_lm):
    forget, retain = batch_of(tiny_lm, FORGET), batch_of(tiny_lm, RETAIN)
    reference_model = other_model(tiny_lm)
    session = session_for(tiny_lm, "npo_gd", beta=0.3, retain_weight=0.6)
    loss = METHODS["npo_gd"]().loss(tiny_lm.model, (forget, retain), session, reference_for(tiny_lm.model, reference_model, forget))
    npo = npo_by_hand(seq_logprob_by_hand(tiny_lm.model, forget), seq_logprob_by_hand(reference_model, forget), 0.3)
    assert float(loss) == pytest.approx(npo + 0.6 * mean_nll_by_hand(tiny_lm.model, retain), abs=1e-4)


def test_npo_kl_loss_is_npo_plus_weighted_kl_from_the_original(tiny_lm):
    forget, retain = batch_of(tiny_lm, FORGET), batch_of(tiny_lm, RETAIN)
    reference_model = other_model(tiny_lm)
    session = session_for(tiny_lm, "npo_kl", beta=0.3, retain_weight=2.0)
    loss = METHODS["npo_kl"]().loss(tiny_lm.model, (forget, retain), session, reference_for(tiny_lm.model, reference_model, forget))
    npo = npo_by_hand(seq_logprob_by_hand(tiny_lm.model, forget), seq_logprob_by_hand(reference_model, forget), 0.3)
    kl = kl_by_hand(tiny_lm.model, reference_model, retain)
    assert kl > 1e-3  # the reversed KL, KL(π_θ ‖ π_ref), differs: the direction is checked, not only the size
    reversed_kl = kl_by_hand(reference_model, tiny_lm.model, retain)
    assert abs(reversed_kl - kl) > 1e-4
    assert float(loss) == pytest.approx(npo + 2.0 * kl, abs=1e-4)


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


# ------------------------------------------------------------------ every new method through run_unlearn

RUN_OVERRIDES = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "2",
                 "batch_size": "2", "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32", "layer": "1"}


def job_for(model_dir, mode, setting, out):
    from rwku.unlearn import UnlearnJob

    data = RwkuData.open(["demo"])
    return UnlearnJob(model=str(model_dir), data=data, targets=data.select("1" if setting == "single" else "1-2"),
                      methods=list(NEW_METHODS), mode=mode, setting=setting, preset="none", overrides=dict(RUN_OVERRIDES),
                      sets=("forget",), limit=1, device="cpu", dtype="float32", eval_epochs=True, out=out)


@pytest.mark.parametrize("mode, setting", [
    (ModeConfig(mode="full"), "single"), (ModeConfig(mode="lora"), "single"),
    (ModeConfig(mode="full", train_layers=(1, 2)), "batch"), (ModeConfig(mode="lora", train_layers=(0, 1)), "batch"),
], ids=["full-single", "lora-single", "full-layers-batch", "lora-layers-batch"])
def test_every_new_method_runs_in_every_mode_and_setting_with_epoch_evaluation(tiny_model_dir, tmp_path, monkeypatch,
                                                                             mode, setting):
    from rwku.unlearn import run_unlearn

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    job = job_for(tiny_model_dir, mode, setting, tmp_path / "run")
    rows = run_unlearn(job)[1]
    unit = "1_Isaac_Newton" if setting == "single" else "batch_1-2"
    assert set(rows) == {"before", *(job.run_name(m) for m in NEW_METHODS)}
    for method in NEW_METHODS:
        folder = tmp_path / "run" / job.run_name(method) / unit
        summary = json.loads((folder / "summary.json").read_text())
        forget_kind = "questions" if method == "idknll" else "forget"
        n_targets = 1 if setting == "single" else 2
        assert summary["corpora"] == {forget_kind: {"source": "generated", "texts": 2 * n_targets},
                                      "retain": {"source": "generated", "texts": 2, "dropped": 0}}
        assert summary["epoch_points"] == [1] and (folder / "epochs" / "1" / "summary.json").is_file()
        log = json.loads((folder / "train_log.json").read_text())
        assert log["corpus_sizes"]["retain"] == 2 and len(log["steps"]) == 2 * n_targets


def test_corpus_official_refuses_a_method_that_needs_retain_text_in_one_line(tiny_model_dir, tmp_path):
    from rwku.unlearn import check_job

    job = job_for(tiny_model_dir, ModeConfig(mode="lora"), "single", tmp_path / "run")
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

    values = {"rmu-lora": VALUES["ga-lora"], "graddiff-lora": VALUES["ga-lora"], **VALUES}  # written out of order
    folder = make_folder(tmp_path / "exp", values=values)
    runs = collect_runs([folder])
    assert [r.label for r in runs] == ["before", "icu", "ga-lora", "npo-lora", "rt-lora", "graddiff-lora", "rmu-lora"]
    legend = method_legend(runs)
    assert [name for name, _, _ in legend] == ["icu", "ga", "npo", "rt", "graddiff", "rmu"]
    assert dict((name, paper) for name, _, paper in legend)["rmu"] == "Li et al. 2024, WMDP"
    build_report([folder], tmp_path / "report", ReportOptions(title="legend"))
    page = (tmp_path / "report" / "index.html").read_text()
    legend_html = page.split('id="method-legend"')[1].split("</table>")[0]
    assert legend_html.index("<td>graddiff</td>") < legend_html.index("<td>rmu</td>") and "Liu et al. 2022, GradDiff" in legend_html


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
    """experiments/rmu-calibration.json (the README's measurement) stays valid: every method and the RMU sweeps."""
    from pathlib import Path

    from rwku.experiment import load_experiment

    planned = load_experiment(Path(__file__).resolve().parent.parent / "experiments" / "rmu-calibration.json").jobs
    runs = {p.job.run_name(m) for p in planned for m in p.job.methods}
    assert {f"{m}-lora" for m in NEW_METHODS} <= runs and "rmu-lora-lr0.03-alpha10" in runs and len(runs) == 7 + 10
    calibration = next(p.job for p in planned if p.grid == "rmu-calibration")
    assert calibration.settings("rmu").params.alpha == 1200  # pinned: the rows were measured at WMDP's α
