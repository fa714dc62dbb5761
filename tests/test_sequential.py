"""Sequential unlearning on a tiny model: each step starts from the weights the previous step left (a weight only
step 1 changes stays changed after step 2), LoRA is merged per step, a kill between steps resumes at the next step
with nothing recomputed, bad settings are one line, and the report draws and tabulates the steps."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import rwku.unlearn as unlearn_module
from rwku.data import RwkuData
from rwku.evaluation.settings import RunSettings
from rwku.methods.base import Unlearned
from rwku.methods.config import ModeConfig
from rwku.models.loading import load_model
from rwku.sequential import MODEL_DIR, step_sets
from rwku.unlearn import UnlearnJob, run_unlearn

SMALL = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "1", "batch_size": "2",
         "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32"}
#: (target number -> the one parameter the fake method changes in that target's step)
TOUCHED = {1: "model.norm.weight", 2: "model.layers.0.input_layernorm.weight", 3: "model.layers.0.post_attention_layernorm.weight"}


def make_job(model_dir, out, targets="1-2", methods=("ga",), mode="lora", **extra):
    data = RwkuData.open(["demo"])
    run = RunSettings(model=str(model_dir), sets=("forget", "neighbor"), limit=1, device="cpu", dtype="float32")
    return UnlearnJob(run=run, data=data, targets=data.select(targets), methods=list(methods), mode=ModeConfig(mode=mode),
                      setting="sequential", preset="none", overrides=dict(SMALL), out=out, **extra)


def fake_method(job, method, session):
    """Adds 1 to one parameter, chosen by the step's target: what each step changed is known exactly."""
    model = session.lm.model
    with torch.no_grad():
        dict(model.named_parameters())[TOUCHED[session.targets[0].number]].add_(1.0)
    return Unlearned(model=model, log={"fake": True})


def weights(folder):
    return {name: p.detach().clone() for name, p in load_model(str(folder), device="cpu", dtype="float32").model.named_parameters()}


def test_each_step_starts_from_the_model_the_previous_step_left(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(unlearn_module, "apply_method", fake_method)
    out = tmp_path / "run"
    run_unlearn(make_job(tiny_model_dir, out, mode="full"))
    original = weights(tiny_model_dir)
    step1 = weights(out / "ga-full-sequential" / "step01_1_Isaac_Newton" / MODEL_DIR)
    step2 = weights(out / "ga-full-sequential" / "step02_2_Marie_Curie" / MODEL_DIR)
    first, second = TOUCHED[1], TOUCHED[2]
    assert torch.allclose(step1[first], original[first] + 1) and torch.equal(step1[second], original[second])
    assert torch.allclose(step2[first], original[first] + 1)  # only step 1 changed it: it stays changed in step 2
    assert torch.allclose(step2[second], original[second] + 1)
    untouched = [n for n in original if n not in (first, second)]
    assert all(torch.equal(step2[n], original[n]) for n in untouched)
    summary = json.loads((out / "ga-full-sequential" / "step02_2_Marie_Curie" / "summary.json").read_text())
    assert summary["sequential"]["step"] == 2 and set(summary["sequential"]["targets"]) == {"1_Isaac_Newton", "2_Marie_Curie"}
    assert summary["key"]["unit"]["targets"] == ["Isaac Newton", "Marie Curie"]  # the order so far is in the key
    assert summary["target"] == "Marie Curie" and "forget" in summary


def test_lora_steps_are_merged_before_the_next_step(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    run_unlearn(make_job(tiny_model_dir, out))
    folder = out / "ga-lora-sequential" / "step01_1_Isaac_Newton" / MODEL_DIR
    assert (folder / "config.json").is_file() and not (folder / "adapter_config.json").exists()
    original, step1 = weights(tiny_model_dir), weights(folder)
    changed = [n for n in original if not torch.equal(original[n], step1[n])]
    assert changed and all("proj" in n for n in changed)  # the merged adapter moved the q/v projections only
    step2 = weights(out / "ga-lora-sequential" / "step02_2_Marie_Curie" / MODEL_DIR)
    assert any(not torch.equal(step1[n], step2[n]) for n in changed)


def test_a_kill_between_steps_resumes_at_the_next_step(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(unlearn_module, "apply_method", fake_method)
    out = tmp_path / "run"
    real, calls = unlearn_module.unlearn_step, []

    def killed_at_step_two(job, task, progress):
        calls.append(task.slug)
        if task.slug.startswith("step02") and len(calls) == 2:
            raise KeyboardInterrupt
        return real(job, task, progress)

    monkeypatch.setattr(unlearn_module, "unlearn_step", killed_at_step_two)
    with pytest.raises(KeyboardInterrupt):
        run_unlearn(make_job(tiny_model_dir, out, targets="1-3", mode="full"))
    first = out / "ga-full-sequential" / "step01_1_Isaac_Newton" / "summary.json"
    stamp = first.stat().st_mtime_ns
    assert not (out / "ga-full-sequential" / "step02_2_Marie_Curie" / "summary.json").exists()
    calls.clear()
    run_unlearn(make_job(tiny_model_dir, out, targets="1-3", mode="full"))
    assert calls == ["step02_2_Marie_Curie", "step03_3_Wolfgang_Amadeus_Mozart"]  # step 1 not recomputed
    assert first.stat().st_mtime_ns == stamp
    last = weights(out / "ga-full-sequential" / "step03_3_Wolfgang_Amadeus_Mozart" / MODEL_DIR)
    original = weights(tiny_model_dir)
    assert all(torch.allclose(last[name], original[name] + 1) for name in TOUCHED.values())


def test_utility_runs_on_the_last_and_chosen_steps(tiny_model_dir, tmp_path):
    job = make_job(tiny_model_dir, tmp_path, targets="1-3", utility_steps=(1,))
    job.run = job.run.with_sets(("forget", "utility"))
    assert step_sets(job, 1) == ("forget", "utility") and step_sets(job, 2) == ("forget",) and step_sets(job, 3) == ("forget", "utility")


def test_sequential_refuses_untrained_methods_and_one_target(monkeypatch, capsys, tmp_path):
    from rwku.cli import main

    for args, fragment in ((["--method", "icu", "--targets", "1-2"], "icu do not train"),
                           (["--method", "ga", "--targets", "1"], "at least two targets"),
                           (["--method", "ga", "--targets", "1-2", "--utility-steps", "5"], "utility_steps 5: give steps 1 … 2"),
                           (["--method", "ga", "--targets", "1-2", "--utility-steps", "x"], "--utility-steps x")):
        monkeypatch.setattr(sys, "argv", ["rwku", "unlearn", "--data", "demo", "--setting", "sequential", "--out", str(tmp_path / "o"), *args])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        assert fragment in " ".join(capsys.readouterr().err.split())


def test_report_tabulates_and_draws_the_steps(tiny_model_dir, tmp_path, monkeypatch):
    from rwku.report.build import build_report
    from rwku.report.collect import collect_runs
    from rwku.report.sequential import steps_of, to_markdown

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(unlearn_module, "apply_method", fake_method)
    out = tmp_path / "run"
    run_unlearn(make_job(tiny_model_dir, out, mode="full"))
    runs = collect_runs([out])
    (run,) = [r for r in runs if r.setting == "sequential"]
    slugs, steps = steps_of(run, runs)
    assert slugs == ["1_Isaac_Newton", "2_Marie_Curie"] and [s.step for s in steps] == [0, 1, 2]
    stored = json.loads((out / "ga-full-sequential" / "step01_1_Isaac_Newton" / "summary.json").read_text())
    assert steps[1].value("2_Marie_Curie", "forget.All") == stored["sequential"]["targets"]["2_Marie_Curie"]["forget"]["All"]
    assert steps[0].value("1_Isaac_Newton", "forget.All") == json.loads((out / "before" / "1_Isaac_Newton" / "summary.json").read_text())["forget"]["All"]
    assert "| 2 | Marie Curie |" in to_markdown(runs)
    report = build_report([out], tmp_path / "report")
    assert "sequential" in report.figures and (tmp_path / "report" / "sequential.md").is_file()
    assert [r.label for r, _ in report.table.rows] == ["before"]  # the sequential run is no Table-1 row


def test_experiment_file_runs_sequential_grids(tmp_path):
    from rwku.experiment import load_experiment

    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"model": "smollm2-135m", "data": "demo", "targets": "all", "out": str(tmp_path / "o"),
                                "grids": [{"name": "seq", "methods": ["ga", "rt"], "modes": ["lora", "full"],
                                           "setting": "sequential", "utility_steps": [2]}]}))
    experiment = load_experiment(path)
    assert {p.job.setting for p in experiment.jobs} == {"sequential"} and experiment.jobs[0].job.utility_steps == (2,)
    runs = {t.run for p in experiment.jobs for t in p.job.tasks()}
    assert {"ga-lora-sequential", "rt-full-sequential", "before"} <= runs
    steps = [t.slug for t in experiment.jobs[0].job.tasks() if t.run == "ga-lora-sequential"]
    assert steps == ["step01_1_Isaac_Newton", "step02_2_Marie_Curie", "step03_3_Wolfgang_Amadeus_Mozart"]


def test_npo_and_rt_run_sequentially_too(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rows = run_unlearn(make_job(tiny_model_dir, out, methods=("npo", "rt")))[1]["rows"]
    assert {"npo-lora-sequential", "rt-lora-sequential"} <= set(rows)
    for run in ("npo-lora-sequential", "rt-lora-sequential"):
        summary = json.loads((out / run / "step02_2_Marie_Curie" / "summary.json").read_text())
        assert summary["sequential"]["step"] == 2 and summary["config"]["setting"] == "sequential"
        assert (out / run / "step02_2_Marie_Curie" / MODEL_DIR / "config.json").is_file()
