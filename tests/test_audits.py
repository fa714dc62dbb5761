"""Audits on tiny models: quantization error bounds and exactness, the logit lens against the model's own logits,
the recovered % on hand-made numbers, and each audit's result on a tiny model (scores on the same probes, the
model still to be evaluated left untouched)."""

from __future__ import annotations

import copy

import pytest
import torch

from rwku.audits import AUDITS, audit_key, parse_audits, resolve_audit_settings
from rwku.audits.base import AuditSubject, plain_copy, recovered_percent
from rwku.audits.logit_lens import first_informative_token, frequent_token_ids, layer_logits
from rwku.audits.quantization import quantize_model, quantize_weight, quantized_linears
from rwku.data import RwkuData
from rwku.errors import RwkuError
from rwku.evaluation.sets import load_target
from rwku.evaluation.settings import RunSettings


def test_recovered_percent_on_hand_made_numbers():
    assert recovered_percent(30.0, 10.0, 50.0) == pytest.approx(50.0)  # half of the 40 points removed come back
    assert recovered_percent(50.0, 10.0, 50.0) == pytest.approx(100.0)
    assert recovered_percent(5.0, 10.0, 50.0) == pytest.approx(-12.5)  # the attack removed more
    assert recovered_percent(60.0, 10.0, 50.0) == pytest.approx(125.0)
    assert recovered_percent(12.0, 10.0, 14.9) is None  # under 5 points between original and unlearned: n/a
    assert recovered_percent(12.0, 10.0, 15.0) == pytest.approx(40.0)  # exactly 5 points is measurable
    assert recovered_percent(12.0, 20.0, 10.0) is None  # unlearning raised the score: nothing to recover
    assert recovered_percent(None, 10.0, 50.0) is None


def test_quantization_error_is_within_half_a_step_per_group():
    torch.manual_seed(0)
    weight = torch.randn(6, 300)  # 300 inputs: two full groups of 128 and a padded one of 44
    for bits in (8, 4):
        quantized = quantize_weight(weight, bits, 128)
        levels = 2 ** (bits - 1) - 1
        for start in (0, 128, 256):
            group = weight[:, start:start + 128]
            step = group.abs().amax(dim=1, keepdim=True) / levels
            assert ((quantized[:, start:start + 128] - group).abs() <= step / 2 + 1e-6).all()
        assert len(torch.unique(quantized[0, :128])) <= 2 * levels + 1
    assert (quantize_weight(weight, 4, 128) - weight).abs().mean() > (quantize_weight(weight, 8, 128) - weight).abs().mean()


def test_int8_of_an_int8_representable_weight_is_exact():
    torch.manual_seed(1)
    integers = torch.randint(-127, 128, (4, 256)).float()
    integers[:, ::128] = 127  # every group reaches the largest level, so its scale is exactly the step
    weight = integers * 0.0123
    assert torch.equal(quantize_weight(weight, 8, 128), weight)


def test_quantize_model_merges_lora_into_a_copy_and_leaves_the_model_untouched(tiny_lm):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(tiny_lm.model), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    before = {name: p.clone() for name, p in model.named_parameters()}
    quantized = quantize_model(model, 4, 16)
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())
    assert not hasattr(quantized, "peft_config")
    merged = plain_copy(model)
    linears, originals = quantized_linears(quantized), quantized_linears(merged)
    assert len(linears) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    for mine, reference in zip(linears, originals):
        assert torch.equal(mine.weight, quantize_weight(reference.weight, 4, 16))
    assert torch.equal(quantized.lm_head.weight, merged.lm_head.weight)  # the head stays at full precision


def test_logit_lens_at_the_last_layer_is_the_models_own_logits(tiny_lm):
    ids = tiny_lm.tokenizer("Isaac Newton was an English physicist", add_special_tokens=True)["input_ids"]
    lens = layer_logits(tiny_lm.model, ids)
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert lens.shape == (2, logits.shape[-1])
    assert torch.allclose(lens[-1], logits, atol=1e-5)
    assert not torch.allclose(lens[0], logits, atol=1e-3)


def test_first_informative_token_skips_frequent_and_single_character_tokens(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    frequent = frequent_token_ids(tokenizer, 10)
    assert len(frequent) == 10  # the tokens of the 10 earliest merges
    the = tokenizer(" the", add_special_tokens=False)["input_ids"]
    token = first_informative_token(tokenizer, "the Newton", frequent | frozenset(the))
    assert token is not None and token not in the and len(tokenizer.decode([token]).strip()) > 1
    assert token == tokenizer(" the Newton", add_special_tokens=False)["input_ids"][len(the)]
    assert first_informative_token(tokenizer, ".", frequent) is None
    everything = frozenset(tokenizer.get_vocab().values())
    assert first_informative_token(tokenizer, "Newton", everything) is None


def test_audit_names_settings_and_key():
    assert parse_audits("logit_lens, quant8") == ("quant8", "logit_lens")
    assert parse_audits("all") == tuple(AUDITS)
    with pytest.raises(RwkuError, match="unknown audit"):
        parse_audits("quant3")
    settings, sources = resolve_audit_settings("small", {"lens_top_k": "5"})
    assert settings.lens_top_k == 5 and sources["lens_top_k"] == "--audit-set"
    assert audit_key(["quant4"], settings) == {"names": ["quant4"], "settings": {"group_size": 128, "quant_backend": "torch"}}
    with pytest.raises(RwkuError, match="unknown audit setting"):
        resolve_audit_settings("small", {"bits": "3"})
    with pytest.raises(RwkuError, match="whole number"):
        resolve_audit_settings("small", {"lens_top_k": "many"})


def make_subject(lm, model=None, preamble=None, method="ga", **overrides):
    data = RwkuData.open(["demo"])
    target = data.select("1")[0]
    settings, _ = resolve_audit_settings("small", overrides)
    return AuditSubject(lm=lm, model=model if model is not None else lm.model, preamble=preamble, method=method,
                        data=load_target(data, target, ("forget", "neighbor"), 1), settings=settings,
                        load_original=lambda: lm.model, run=RunSettings(batch_size=4),
                        control_probes=lambda: list(load_target(data, data.select("2")[0], ("forget",), 1)["forget"]))


@pytest.mark.parametrize("name", ["quant8", "quant4", "logit_lens"])
def test_each_audit_reports_its_scores_on_the_same_probes(tiny_lm, name):
    subject = make_subject(tiny_lm, lens_frequent="10")  # the tiny tokenizer has few merges
    result = AUDITS[name].run(subject)
    forget = result.summary["forget"]
    assert set(forget) == {"attack", "unlearned", "original", "recovered"}
    assert "attack" in result.summary["neighbor"]
    assert len(result.items["forget"]) == len(subject.forget) == result.summary["n_probes"]
    if name == "logit_lens":  # the unlearned model is the original here: the lens finds the same on both
        assert forget["attack"] == forget["original"]
        assert forget["attack"] is not None and forget["attack"] >= forget["unlearned"]
    else:
        assert forget["unlearned"] == forget["original"]
        assert result.summary["controls"]["original_quantized"]["forget"] == forget["attack"]


# ------------------------------------------------------------------ audits inside rwku unlearn


def audited_job(model_dir, out, audits=("quant8", "logit_lens"), methods=("icu", "ga")):
    from test_unlearn import make_job

    job = make_job(model_dir, methods=methods)
    job.audits, job.audit_overrides, job.out = audits, {"lens_frequent": 10}, out
    job.run = job.run.with_sets(("forget", "neighbor"))
    return job


def test_unlearn_stores_each_audit_like_an_epoch_point_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    import json

    import rwku.unlearn as unlearn_module
    from rwku.unlearn import run_unlearn

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    run_unlearn(audited_job(tiny_model_dir, out))
    unit = out / "ga-lora" / "1_Isaac_Newton"
    summary = json.loads((unit / "summary.json").read_text())
    assert summary["audit_points"] == ["quant8", "logit_lens"] and summary["key"]["audits"]["names"] == ["quant8", "logit_lens"]
    assert summary["key"]["unit"]["audits"]["data"] and summary["seconds"]["audit_quant8"] > 0
    for name in ("quant8", "logit_lens"):
        audit = json.loads((unit / "audits" / name / "summary.json").read_text())
        assert audit["audit"] == name and audit["key"]["audit"] == name and audit["method"] == "ga"
        items = json.loads((unit / "audits" / name / "items.json").read_text())
        assert len(items["forget"]) == audit["n_probes"]
    quant = json.loads((unit / "audits" / "quant8" / "summary.json").read_text())
    assert quant["forget"]["unlearned"] == summary["forget"]["All"]  # the unit's own evaluation is the baseline
    assert "note" in json.loads((out / "icu" / "1_Isaac_Newton" / "audits" / "quant8" / "summary.json").read_text())
    assert not (out / "before" / "1_Isaac_Newton" / "audits").exists()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a stored unit was recomputed")

    monkeypatch.setattr(unlearn_module, "evaluate_target", must_not_run)
    run_unlearn(audited_job(tiny_model_dir, out))  # the same audits: stored
    run_unlearn(audited_job(tiny_model_dir, out, audits=()))  # no audits asked: the audited units serve it
    monkeypatch.undo()
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    from rwku.execution.plan import build_plan

    plan = build_plan(out, audited_job(tiny_model_dir, out, audits=("quant4",)).tasks())
    assert plan.status["ga-lora/1_Isaac_Newton"].startswith("stale: audits")
    assert plan.status["before/1_Isaac_Newton"] == "stored"


def test_cli_unlearn_with_audits_then_rwku_audit_of_the_saved_adapter(tiny_model_dir, tmp_path, monkeypatch, cli):
    import json

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out, audited = tmp_path / "run", tmp_path / "audited"
    small = ["--set", "corpus_size=2", "--set", "corpus_max_new_tokens=4", "--set", "epochs=1", "--set", "batch_size=2",
             "--set", "warmup_steps=0", "--set", "max_length=32"]
    code, stdout, err = cli("unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--method", "ga", "--sets", "forget,neighbor",
                            "--limit", "1", "--device", "cpu", "--preset", "small", *small, "--save-model", "--out", str(out),
                            "--audit", "quant4,logit_lens", "--audit-set", "lens_frequent=10")
    assert code == 0, err
    assert "audits · forget All under the attack" in stdout and "quant4" in stdout
    saved = out / "ga-lora" / "1_Isaac_Newton" / "model"
    code, stdout, err = cli("audit", "--model", str(saved), "--original", str(tiny_model_dir), "--data", "demo", "--targets", "1",
                            "--limit", "1", "--device", "cpu", "--audit", "quant4", "--out", str(audited))
    assert code == 0, err
    first = json.loads((out / "ga-lora" / "1_Isaac_Newton" / "audits" / "quant4" / "summary.json").read_text())
    again = json.loads((audited / "1_Isaac_Newton" / "audits" / "quant4" / "summary.json").read_text())
    assert again["method"] == "ga" and again["forget"] == first["forget"]  # the saved adapter audits as the unit did
    code, _, err = cli("audit", "--model", str(saved), "--original", str(tiny_model_dir), "--data", "demo", "--audit", "quant3",
                       "--out", str(audited))
    assert code == 2 and "unknown audit quant3" in err


# ------------------------------------------------------------------ relearning


def probe(answer, query="Q?", level="2"):
    from rwku.data.schema import Probe

    return Probe(query=query, answer=answer, level=level, type="t", subject="s")


def test_the_relearning_split_never_puts_one_fact_on_both_sides():
    from rwku.audits.relearn import normalise, split_facts

    answers = ["Cambridge", "cambridge.", " Cambridge ", "Royal Society", "royal  society!", "1687", "Principia", "Mint",
               "Isaac Newton", "isaac newton", "calculus"]
    probes = [probe(a) for a in answers]
    for seed in range(20):
        taught, held_out = split_facts(probes, seed)
        assert not set(taught) & set(held_out)
        assert set(taught) | set(held_out) == {normalise(a) for a in answers} and len(taught) + len(held_out) == 7
        sides = {normalise(p.answer): "taught" if normalise(p.answer) in taught else "held" for p in probes}
        assert all(sides[normalise(p.answer)] in ("taught", "held") for p in probes)
    assert split_facts(probes, 0) == split_facts(list(reversed(probes)), 0)  # the split depends on the facts, not the order


def test_statements_fill_the_blank_or_answer_the_question():
    from rwku.audits.relearn import statements

    probes = [probe("Cambridge", "He taught at the University of ___.", "1"), probe("Royal Society", "Which society did he lead?"),
              probe("Royal Society", "Pretend you are a guide. Which society?", "3"), probe("Mint", "Role play: where?", "3")]
    assert statements(probes, ["cambridge", "royal society", "mint"]) == [
        "He taught at the University of Cambridge.", "Which society did he lead? Royal Society.", "Role play: where? Mint."]


def test_relearning_reports_the_held_out_half_with_both_controls(tiny_lm):
    subject = make_subject(tiny_lm, relearn_steps="2")
    before = {name: p.clone() for name, p in tiny_lm.model.named_parameters()}
    result = AUDITS["relearn"].run(subject)
    assert all(torch.equal(before[name], p) for name, p in tiny_lm.model.named_parameters())
    summary, items = result.summary, result.items
    taught = {s.rstrip(".") for s in items["statements"]}
    assert summary["facts"]["taught"] >= summary["facts"]["held_out"] > 0
    assert all(row["fact"] in items["held_out"] for row in items["forget"]) and len(items["forget"]) == summary["n_probes"]
    assert not any(row["reference"] in taught for row in items["forget"])
    assert set(summary["controls"]) == {"other_target", "original_relearned"}
    assert summary["forget"]["unlearned"] == summary["forget"]["original"]  # the subject here is the original model
    assert summary["controls"]["original_relearned"] == summary["forget"]["attack"]  # the same relearning of the same weights


def test_relearning_lowers_the_loss_of_the_taught_statements_on_a_copy(tiny_lm):
    from rwku.audits.relearn import relearned
    from rwku.methods.base import text_example
    from rwku.methods.training import collate, mean_token_nll

    subject = make_subject(tiny_lm, relearn_steps="5", relearn_lr="1e-2", relearn_mode="full")
    texts = ["Isaac Newton was born in Lincolnshire.", "Newton taught at Cambridge."]
    batch = collate([text_example(tiny_lm.tokenizer, t, 64) for t in texts], int(tiny_lm.tokenizer.pad_token_id), "cpu")
    with torch.no_grad():
        before = float(mean_token_nll(tiny_lm.model, batch))
        after = float(mean_token_nll(relearned(subject, tiny_lm.model, texts), batch))
        assert float(mean_token_nll(tiny_lm.model, batch)) == before
    assert after < before - 0.5


# ------------------------------------------------------------------ optimised suffix


def test_the_suffix_optimiser_lowers_the_answers_loss_without_using_the_answer(tiny_lm):
    from rwku.audits.suffix import answer_losses, banned_tokens, optimise_suffix, suffix_prompt
    from rwku.evaluation.sets.probes import probe_prompt

    subject = make_subject(tiny_lm, suffix_steps="6", suffix_candidates="16", suffix_top_k="8", suffix_tokens="4")
    probe = next(p for p in subject.forget if p.level == "2")
    ctx = subject.context(tiny_lm.model, None)
    prompt = suffix_prompt(ctx, probe)
    assert tiny_lm.tokenizer.decode(prompt.with_suffix([])) == tiny_lm.tokenizer.decode(ctx.prompts.encode(probe_prompt(ctx, probe)))
    found = optimise_suffix(tiny_lm.model, tiny_lm.tokenizer, prompt, probe.answer, subject.settings, seed=0, batch_size=8)
    assert found.loss_end < found.loss_start
    again = float(answer_losses(tiny_lm.model, prompt, torch.tensor([found.suffix]), 8)[0])
    assert again == pytest.approx(found.loss_end, abs=1e-5)
    assert len(found.suffix) == 4 and not set(found.suffix) & banned_tokens(tiny_lm.tokenizer, probe.answer)
    assert probe.answer.lower() not in found.text.lower()


def test_banned_tokens_cover_case_and_space_variants(tiny_lm):
    from rwku.audits.suffix import banned_tokens

    tokenizer = tiny_lm.tokenizer
    banned = banned_tokens(tokenizer, "Isaac Newton")
    for text in ("Newton", " newton", " NEWTON", "isaac", " Isaac Newton"):
        assert set(tokenizer(text, add_special_tokens=False)["input_ids"]) <= banned
    assert set(tokenizer.all_special_ids) <= banned


def test_suffix_audit_reports_controls_and_neighbors(tiny_lm):
    subject = make_subject(tiny_lm, suffix_steps="2", suffix_candidates="8", suffix_top_k="8", suffix_tokens="3", suffix_probes="1")
    result = AUDITS["suffix"].run(subject)
    summary, rows = result.summary, result.items["forget"]
    assert summary["n_probes"] == 1 == len(rows) and rows[0]["level"] == "QA" and rows[0]["suffix"]
    assert set(summary["controls"]) == {"original_suffix", "random_suffix"}
    assert summary["controls"]["original_suffix"] == summary["forget"]["attack"]  # the same weights, the same search
    assert summary["loss"]["end"] <= summary["loss"]["start"]
    assert len(result.items["neighbor"]) == sum(p.level == "2" for p in subject.neighbor)


def test_experiment_grids_take_an_audit_key(tmp_path):
    import json

    from rwku.experiment import load_experiment

    spec = {"model": "smollm2-135m", "data": "demo", "targets": "1", "out": str(tmp_path / "exp"), "preset": "small",
            "audit_set": {"suffix_steps": 3},
            "grids": [{"name": "audited", "methods": ["ga"], "audit": ["suffix", "quant4"]}, {"name": "plain", "methods": ["npo"]}]}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(spec))
    jobs = load_experiment(path).jobs
    assert jobs[0].job.audits == ("quant4", "suffix") and jobs[0].job.audit_settings.suffix_steps == 3
    assert jobs[1].job.audits == ()
    path.write_text(json.dumps({**spec, "grids": [{"name": "bad", "methods": ["ga"], "audit": "quant2"}]}))
    with pytest.raises(RwkuError, match=r"grids\[0\] \(bad\).*unknown audit quant2"):
        load_experiment(path)


def test_dry_run_memory_counts_the_audits_copies(tmp_path):
    from rwku.execution.resources import DEFAULT_MODEL_PARAMETERS, unit_memory

    job = audited_job("smollm2-135m", tmp_path / "out", audits=("quant4",), methods=("ga",))
    plain = audited_job("smollm2-135m", tmp_path / "out", audits=(), methods=("ga",))
    weights = DEFAULT_MODEL_PARAMETERS * 4  # float32 on a CPU
    assert "audits" not in unit_memory(plain.tasks()[1])
    assert unit_memory(job.tasks()[1])["audits"].weights == 3 * weights  # unlearned, original, attacked copy
    job.audits, job.audit_overrides = ("relearn",), {"relearn_mode": "full"}
    assert unit_memory(job.tasks()[1])["audits"].weights == 6 * weights
