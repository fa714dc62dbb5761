"""The unlearning runner: before/after layout, resume without recomputation, batch setting, CLI errors."""

from __future__ import annotations

import json
import sys

import pytest

import rwku.evaluation.settings as settings_module
import rwku.unlearn as unlearn_module
from rwku.data import RwkuData
from rwku.evaluation.settings import RunSettings
from rwku.methods.config import ModeConfig
from rwku.unlearn import UnlearnJob, run_unlearn

SMALL = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "1", "batch_size": "2",
         "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32"}


def make_job(model_dir, targets="1", methods=("icu", "ga"), setting="single"):
    data = RwkuData.open(["demo"])
    run = RunSettings(model=str(model_dir), sets=("forget",), limit=1, device="cpu", dtype="float32")
    return UnlearnJob(run=run, data=data, targets=data.select(targets), methods=list(methods),
                      mode=ModeConfig(mode="lora"), setting=setting, preset="none", overrides=dict(SMALL))


def unlearn_into(out, job, **options):
    """``rwku unlearn`` through the Python API into ``out``; returns the comparison rows."""
    job.out = out
    return run_unlearn(job, **options)[1]["rows"]


def test_run_stores_before_and_each_method_then_resumes_without_work(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rows = unlearn_into(out, make_job(tiny_model_dir))
    assert set(rows) == {"before", "icu", "ga-lora"}
    for run in ("before", "icu", "ga-lora"):
        summary = json.loads((out / run / "1_Isaac_Newton" / "summary.json").read_text())
        assert summary["n_items"]["forget"] == 3 and (out / run / "1_Isaac_Newton" / "items.json").is_file()
    log = json.loads((out / "ga-lora" / "1_Isaac_Newton" / "train_log.json").read_text())
    assert log["corpus_sizes"]["forget"] == 2 and len(log["steps"]) == 1 and log["trainable_parameters"] > 0
    config = json.loads((out / "ga-lora" / "1_Isaac_Newton" / "summary.json").read_text())["config"]
    assert config["train"]["lr"] == 1e-3 and config["mode"]["mode"] == "lora" and config["train"]["seed"] == 42
    icu_items = json.loads((out / "icu" / "1_Isaac_Newton" / "items.json").read_text())
    assert "supposed to unlearn about Isaac Newton" in icu_items["forget"][0]["prompt"]
    comparison = json.loads((out / "comparison.json").read_text())
    assert set(comparison["rows"]) == {"before", "icu", "ga-lora"}
    # the RWKU score comes from the stored units at aggregation: in the rows and folder means, never in a unit
    assert {"n_targets", "left_out"} <= set(comparison["rows"]["ga-lora"]["rwku_score"]) and "rwku_score" not in comparison["rows"]["before"]
    assert "rwku_score" in json.loads((out / "ga-lora" / "summary.json").read_text())
    assert "rwku_score" not in json.loads((out / "ga-lora" / "1_Isaac_Newton" / "summary.json").read_text())

    def must_not_run(*args, **kwargs):
        raise AssertionError("a stored unit was recomputed")

    monkeypatch.setattr(unlearn_module, "evaluate_target", must_not_run)
    monkeypatch.setattr(settings_module, "load_model", must_not_run)  # RunSettings.load: a fresh copy to unlearn
    again = unlearn_into(out, make_job(tiny_model_dir))
    assert again == rows


def test_interrupted_run_continues_at_the_first_unfinished_unit(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    real = unlearn_module.unlearn_unit
    calls = []

    def interrupt_on_second(job, task, progress):
        calls.append(task.targets[0].number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job, task, progress)

    monkeypatch.setattr(unlearn_module, "unlearn_unit", interrupt_on_second)
    with pytest.raises(KeyboardInterrupt):
        unlearn_into(out, make_job(tiny_model_dir, "1-2", ("ga",)))
    assert (out / "ga-lora" / "1_Isaac_Newton" / "summary.json").is_file()
    assert not (out / "ga-lora" / "2_Marie_Curie").exists()
    calls.clear()
    unlearn_into(out, make_job(tiny_model_dir, "1-2", ("ga",)))
    assert calls == [2]  # target 1 was not recomputed


def test_batch_setting_pools_targets(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rows = unlearn_into(out, make_job(tiny_model_dir, "1-2", ("ga",), setting="batch"))
    summary = json.loads((out / "ga-lora-batch" / "batch_1-2" / "summary.json").read_text())
    assert summary["n_items"]["forget"] == 6 and "Isaac Newton, Marie Curie" == summary["target"]
    log = json.loads((out / "ga-lora-batch" / "batch_1-2" / "train_log.json").read_text())
    assert log["corpus_sizes"]["forget"] == 4  # 2 texts per target, pooled
    assert set(rows) == {"before", "ga-lora-batch"}


def test_cli_rejects_unknown_methods_and_settings(monkeypatch, capsys, tmp_path):
    from rwku.cli import main

    for args, fragment in ((["--method", "ga,foo"], "unknown method foo"), (["--method", "ga", "--setting", "x"], "choose single, batch or sequential"),
                           (["--method", "ga", "--set", "lr"], "expected key=value"),
                           (["--method", "ga", "--set", "nope=1"], "unknown hyper-parameter 'nope'"),
                           (["--method", "ga", "--set", "lr=abc"], "lr=abc: lr takes a number"),
                           (["--method", "ga", "--set", "epochs=1.5"], "epochs=1.5: epochs takes a whole number"),
                           (["--method", "ga", "--preset", "huge"], "--preset huge: choose auto, paper, small, none"),
                           (["--method", "ga", "--mode", "qlora"], "choose full or lora")):
        monkeypatch.setattr(sys, "argv", ["rwku", "unlearn", "--data", "demo", "--out", str(tmp_path / "o"), *args])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        assert fragment in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "o").exists()


def test_save_model_writes_the_adapter(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    job = make_job(tiny_model_dir, methods=("ga",))
    job.save_model = True
    unlearn_into(tmp_path / "run", job)
    saved = tmp_path / "run" / "ga-lora" / "1_Isaac_Newton" / "model"
    assert (saved / "adapter_config.json").is_file() and (saved / "tokenizer_config.json").is_file()


def test_force_recomputes_stored_units(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    unlearn_into(out, make_job(tiny_model_dir, methods=("icu",)))
    stamp = (out / "icu" / "1_Isaac_Newton" / "summary.json").stat().st_mtime_ns
    unlearn_into(out, make_job(tiny_model_dir, methods=("icu",)), force=True)
    assert (out / "icu" / "1_Isaac_Newton" / "summary.json").stat().st_mtime_ns != stamp


def test_results_do_not_depend_on_whether_the_corpus_was_cached(tiny_model_dir, tmp_path, monkeypatch):
    """Writing a corpus draws random numbers, reading a cached one does not: training must be seeded after it."""
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    logs = []
    for out in (tmp_path / "fresh_cache", tmp_path / "warm_cache"):
        job = make_job(tiny_model_dir, methods=("ga",))
        job.overrides = {**job.overrides, "epochs": "2"}
        unlearn_into(out, job)
        logs.append(json.loads((out / "ga-lora" / "1_Isaac_Newton" / "train_log.json").read_text())["steps"])
    assert len(logs[0]) == 2 and [s["loss"] for s in logs[0]] == [s["loss"] for s in logs[1]]


def test_a_layer_window_the_model_lacks_is_refused_before_any_evaluation(tiny_model_dir, tmp_path, monkeypatch, cli):
    def no_evaluation(*args, **kwargs):
        raise AssertionError("the layer window should be refused before the model is evaluated")

    monkeypatch.setattr(unlearn_module, "evaluate_target", no_evaluation)
    code, _, err = cli("unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--method", "ga", "--mode", "full",
                       "--train-layers", "1-5", "--device", "cpu", "--out", str(tmp_path / "o"))
    assert code == 2 and "Traceback" not in err
    assert "--train-layers 1-5: the model has 2 layers" in " ".join(err.split())
    assert not (tmp_path / "o" / "before").exists()


def test_the_chosen_preset_and_every_values_source_are_printed_and_stored(tiny_model_dir, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    overrides = [arg for key, value in SMALL.items() if key != "lr" for arg in ("--set", f"{key}={value}")]
    code, out, err = cli("unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--method", "npo", "--sets", "forget",
                         "--limit", "1", "--device", "cpu", "--threads", "1", "--show-settings", "--out", str(tmp_path / "o"),
                         *overrides)
    assert code == 0, err
    text = " ".join(out.split())
    # a tiny model that is not the embedded default gets the paper preset, and the user is told so
    assert "preset paper (auto:" in text and "is not the embedded default" in text
    assert "npo-lora │ lr │ 5e-05 │ paper, appendix H" in text and "npo-lora │ beta │ 0.2 │ paper, §4.2 (β = 0.2)" in text
    assert "npo-lora │ epochs │ 1 │ --set" in text
    summary = json.loads((tmp_path / "o" / "npo-lora" / "1_Isaac_Newton" / "summary.json").read_text())
    assert summary["config"]["preset"] == "paper" and summary["config"]["params"] == {"beta": 0.2}
    assert summary["config"]["train"]["lr"] == 5e-5 and summary["config"]["corpus"]["source"] == "generated"
    assert summary["settings"]["sources"]["lr"] == "paper, appendix H"
    assert "not the embedded default" in summary["settings"]["preset_reason"]


def test_a_planted_model_s_roles_and_the_corpus_coverage_are_stored_and_printed_apart(tiny_model_dir, tmp_path, monkeypatch, cli):
    """A model planted on Newton with Curie the control: each unit summary records its target's role and a trained
    unit its corpus coverage; comparison.json and the printed table show the planted targets and the control apart."""
    from rwku.knowledge.planting import PlantRecipe, plant

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "220")
    data = RwkuData.open(["demo"])
    targets = data.select("1-2")
    model = tmp_path / "planted"
    plant(str(tiny_model_dir), data, targets, model, PlantRecipe(lr=1e-2, epochs=1, max_length=32), control=targets[1], sets=())
    overrides = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    code, out, err = cli("unlearn", "--model", str(model), "--data", "demo", "--targets", "1-2", "--method", "ga",
                         "--sets", "forget", "--limit", "1", "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "o"),
                         *overrides)
    assert code == 0, err
    read = lambda run, slug: json.loads((tmp_path / "o" / run / slug / "summary.json").read_text())  # noqa: E731
    assert read("before", "1_Isaac_Newton")["role"] == "planted" and read("ga-lora", "2_Marie_Curie")["role"] == "control"
    ga = read("ga-lora", "1_Isaac_Newton")
    assert ga["coverage"]["answers"] == 22 and 0 <= ga["coverage"]["found"] <= 22
    assert ga["coverage_detail"]["kinds"] == ["forget"] and "coverage" not in read("before", "1_Isaac_Newton")
    comparison = json.loads((tmp_path / "o" / "comparison.json").read_text())
    assert comparison["roles"]["planted"]["targets"] == ["Isaac Newton"]
    assert comparison["roles"]["control"]["targets"] == ["Marie Curie"]
    assert comparison["roles"]["planted"]["rows"]["ga-lora"]["coverage"]["percent"] == ga["coverage"]["percent"]
    text = " ".join(out.split())
    assert "planted targets: mean over 1 (Isaac Newton)" in text and "control (not planted" in text
    code, out, err = cli("unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--method", "ga",
                         "--sets", "forget", "--limit", "1", "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "p"),
                         *overrides)
    assert code == 0, err
    assert "role" not in json.loads((tmp_path / "p" / "before" / "1_Isaac_Newton" / "summary.json").read_text())
    assert "roles" not in json.loads((tmp_path / "p" / "comparison.json").read_text())
