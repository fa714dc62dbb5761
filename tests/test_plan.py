"""The plan and its declared keys: what is reused and what is recomputed, and why; folder means from every stored
unit; failures recorded per unit while the others finish; the plan printed by --dry-run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass

import pytest

import rwku.unlearn as unlearn_module
from rwku.data import RwkuData
from rwku.data.sources import DEMO_ROOT
from rwku.evaluation.settings import RunSettings
from rwku.execution.key import KEY_VERSION
from rwku.execution.plan import build_plan
from rwku.experiment import experiment_plan, load_experiment, run_experiment
from rwku.methods.config import ModeConfig
from rwku.runner import EvalJob
from rwku.unlearn import UnlearnJob, run_unlearn

TINY = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "1", "batch_size": "2",
        "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32"}


def quick_run(model_dir, **settings):
    """One forget probe on the CPU in float32, with ``settings`` changed."""
    return RunSettings(**{"model": str(model_dir), "sets": ("forget",), "limit": 1, "device": "cpu", "dtype": "float32",
                          **settings})


def unlearn_job(model_dir, out, targets="1", methods=("ga",), data="demo", **fields):
    dataset = RwkuData.open([str(data)])
    fields = {"mode": ModeConfig(mode="lora"), "preset": "none", "overrides": dict(TINY), **fields}
    return UnlearnJob(run=quick_run(model_dir), data=dataset, targets=dataset.select(targets), methods=list(methods), out=out,
                      **fields)


def eval_job(model_dir, targets="1", data="demo", **settings):
    dataset = RwkuData.open([str(data)])
    return EvalJob(run=quick_run(model_dir, **settings), data=dataset, targets=dataset.select(targets))


def statuses(plan):
    return {task.name: plan.status[task.name] for task in plan.tasks}


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))


def test_a_bfloat16_request_does_not_reuse_a_float32_result(tiny_model_dir, tmp_path, cli):
    out = tmp_path / "eval"
    code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--sets", "forget",
                       "--limit", "1", "--device", "cpu", "--dtype", "float32", "--out", str(out))
    assert code == 0, err
    assert build_plan(out, eval_job(tiny_model_dir).tasks()).status["1_Isaac_Newton"] == "stored"
    status = build_plan(out, eval_job(tiny_model_dir, dtype="bfloat16", kernels="fast").tasks()).status["1_Isaac_Newton"]
    assert status.startswith("stale:") and "eval.dtype: float32 → bfloat16" in status
    # fast kernels may depend on the batch: its size joins the key then, and only then
    bf16 = eval_job(tiny_model_dir, dtype="bfloat16", kernels="fast").tasks()[0].key["eval"]
    assert bf16["kernels"] == "fast" and bf16["batch_size"] == 32
    fast32 = build_plan(out, eval_job(tiny_model_dir, kernels="fast").tasks()).status["1_Isaac_Newton"]
    assert "eval.kernels: invariant → fast" in fast32
    other_batch = build_plan(out, eval_job(tiny_model_dir, batch_size=7).tasks()).status["1_Isaac_Newton"]
    assert other_batch == "stored"  # invariant kernels: outputs do not depend on the batch size
    invariant = eval_job(tiny_model_dir).tasks()[0].key["eval"]
    assert invariant["kernels"] == "invariant" and "batch_size" not in invariant
    summary = json.loads((out / "1_Isaac_Newton" / "summary.json").read_text())
    assert summary["config"]["kernels"] == "invariant" and summary["key"]["eval"]["kernels"] == "invariant"


def test_half_precision_under_invariant_kernels_is_refused_before_any_model_work(tiny_model_dir, tmp_path, cli):
    code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--device", "cpu",
                       "--dtype", "bfloat16", "--out", str(tmp_path / "eval"))
    assert code == 2 and "--dtype bfloat16 with --kernels invariant" in " ".join(err.split())
    assert not (tmp_path / "eval").exists()
    code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--kernels", "quick",
                       "--out", str(tmp_path / "eval"))
    assert code == 2 and "--kernels quick: unknown; choose invariant or fast" in " ".join(err.split())


def test_icu_and_repe_asked_in_several_modes_are_one_unit(tiny_model_dir, tmp_path, private_cache):
    settings = {"model": str(tiny_model_dir), "data": "demo", "targets": "1", "out": str(tmp_path / "out"), "preset": "none",
                "sets": ["forget"], "limit": 1, "device": "cpu", "dtype": "float32",
                "grids": [{"name": "both", "methods": ["icu", "repe"], "modes": ["lora", "full"]}]}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(settings))
    plan = experiment_plan(load_experiment(path))
    assert sorted(statuses(plan)) == ["before/1_Isaac_Newton", "icu/1_Isaac_Newton", "repe/1_Isaac_Newton"]
    run_experiment(load_experiment(path))
    assert set(statuses(experiment_plan(load_experiment(path))).values()) == {"stored"}  # a rerun computes nothing


def test_what_changes_a_method_units_key(tiny_model_dir, tmp_path, private_cache):
    out = tmp_path / "out"
    run_unlearn(unlearn_job(tiny_model_dir, out))
    assert set(statuses(build_plan(out, unlearn_job(tiny_model_dir, out).tasks())).values()) == {"stored"}
    lr = unlearn_job(tiny_model_dir, out, overrides={**TINY, "lr": "2e-3"})
    assert "method.train.lr: 0.001 → 0.002" in build_plan(out, lr.tasks()).status["ga-lora/1_Isaac_Newton"]
    assert build_plan(out, lr.tasks()).status["before/1_Isaac_Newton"] == "stored"  # the original model is the same
    # the preset's name is not part of the key, its values are: TINY overrides every value the small preset sets
    assert build_plan(out, unlearn_job(tiny_model_dir, out, preset="small").tasks()).status["ga-lora/1_Isaac_Newton"] == "stored"
    assert build_plan(out, unlearn_job(tiny_model_dir, out, preset="paper", overrides={}).tasks()).status[
        "ga-lora/1_Isaac_Newton"].startswith("stale: method.corpus")
    epochs = unlearn_job(tiny_model_dir, out, eval_epochs=True)
    assert build_plan(out, epochs.tasks()).status["ga-lora/1_Isaac_Newton"] == "stale: no per-epoch evaluations stored"
    assert build_plan(out, unlearn_job(tiny_model_dir, out).tasks(), force=True).status["ga-lora/1_Isaac_Newton"] == "forced (--force)"


def test_a_field_added_to_the_training_settings_keeps_stored_units(tiny_model_dir, tmp_path, private_cache, monkeypatch):
    import rwku.methods.config as config_module

    out = tmp_path / "out"
    run_unlearn(unlearn_job(tiny_model_dir, out))

    @dataclass(frozen=True)
    class TrainConfigWithMore(config_module.TrainConfig):
        label_smoothing: float = 0.0  # a field a later rwku adds, at a default that changes nothing

    monkeypatch.setattr(config_module, "TrainConfig", TrainConfigWithMore)
    job = unlearn_job(tiny_model_dir, out)
    assert job.tasks()[1].key["method"]["train"]["label_smoothing"] == 0.0
    assert build_plan(out, job.tasks()).status["ga-lora/1_Isaac_Newton"] == "stored"
    changed = unlearn_job(tiny_model_dir, out, overrides={**TINY, "label_smoothing": "0.1"})
    assert "label_smoothing" in build_plan(out, changed.tasks()).status["ga-lora/1_Isaac_Newton"]


def test_edited_data_and_replaced_weights_are_not_reused(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO_ROOT, data)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "eval"
    plan = build_plan(out, eval_job(model, data=data).tasks())
    from rwku.execution.run import execute

    execute(plan)
    assert build_plan(out, eval_job(model, data=data).tasks()).status["1_Isaac_Newton"] == "stored"
    probes = data / "1_Isaac_Newton" / "forget_level1.json"
    records = json.loads(probes.read_text())
    records[0]["answer"] = "something else"
    probes.write_text(json.dumps(records))
    assert "unit.data" in build_plan(out, eval_job(model, data=data).tasks()).status["1_Isaac_Newton"]
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    from rwku.models.fingerprint import model_fingerprint

    model_fingerprint.cache_clear()
    assert "model.fingerprint" in build_plan(out, eval_job(model, data=data).tasks()).status["1_Isaac_Newton"]


def test_folder_means_cover_every_stored_unit_whoever_wrote_it(tiny_model_dir, tmp_path, cli):
    """Two processes with disjoint targets and one --out: the folder mean is over both (it was the last one's)."""
    out = tmp_path / "eval"
    for target in ("1", "2"):
        code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", "demo", "--targets", target, "--sets", "forget",
                           "--limit", "1", "--device", "cpu", "--out", str(out))
        assert code == 0, err
    mean = json.loads((out / "summary.json").read_text())
    units = [json.loads((out / slug / "summary.json").read_text()) for slug in ("1_Isaac_Newton", "2_Marie_Curie")]
    assert mean["n_targets"] == 2 and mean["targets"] == ["Isaac Newton", "Marie Curie"]
    assert mean["forget"]["All"] == pytest.approx((units[0]["forget"]["All"] + units[1]["forget"]["All"]) / 2)
    # a unit made with other settings in the same folder is not averaged in
    code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "3", "--sets", "forget",
                       "--limit", "2", "--device", "cpu", "--out", str(out))
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["targets"] == ["Wolfgang Amadeus Mozart"]


def test_a_failing_unit_is_recorded_the_others_finish_and_a_rerun_retries_only_it(tiny_model_dir, tmp_path, private_cache,
                                                                                     monkeypatch, cli):
    real = unlearn_module.unlearn_unit
    attempts = []

    def fail_on_marie_curie(job, task, progress):
        if task.targets[0].name == "Marie Curie":
            attempts.append(task.name)
            raise RuntimeError("CUDA out of memory (injected)")
        return real(job, task, progress)

    monkeypatch.setattr(unlearn_module, "unlearn_unit", fail_on_marie_curie)
    out = tmp_path / "out"
    args = ["unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2", "--method", "ga", "--preset", "none",
            "--sets", "forget", "--limit", "1", "--device", "cpu", "--max-retries", "2", "--out", str(out)]
    args += [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    code, _, err = cli(*args)
    assert code == 2 and "1 unit(s) failed: ga-lora/2_Marie_Curie" in " ".join(err.split())
    assert attempts == ["ga-lora/2_Marie_Curie"] * 3  # the first try and two retries
    failures = json.loads((out / "failures.json").read_text())
    assert failures["ga-lora/2_Marie_Curie"]["error"] == "RuntimeError: CUDA out of memory (injected)"
    assert "Traceback" in failures["ga-lora/2_Marie_Curie"]["traceback"] and failures["ga-lora/2_Marie_Curie"]["attempts"] == 3
    assert (out / "ga-lora" / "1_Isaac_Newton" / "summary.json").is_file()
    assert (out / "before" / "2_Marie_Curie" / "summary.json").is_file()
    monkeypatch.setattr(unlearn_module, "unlearn_unit", real)
    computed = []
    monkeypatch.setattr(unlearn_module, "unlearn_unit", lambda job, task, progress: computed.append(task.name) or real(job, task, progress))
    code, _, err = cli(*args)
    assert code == 0, err
    assert computed == ["ga-lora/2_Marie_Curie"]
    assert json.loads((out / "failures.json").read_text()) == {}


def test_a_user_error_in_a_unit_is_not_retried(tiny_model_dir, tmp_path, private_cache, monkeypatch):
    from rwku.errors import RwkuError

    calls = []

    def missing_corpus(job, task, progress):
        calls.append(task.name)
        raise RwkuError(f"target {task.targets[0].number}: no official corpora; use --corpus generated")

    monkeypatch.setattr(unlearn_module, "unlearn_unit", missing_corpus)
    outcome, _ = run_unlearn(unlearn_job(tiny_model_dir, tmp_path / "out"))
    assert calls == ["ga-lora/1_Isaac_Newton"] and outcome.failed == ["ga-lora/1_Isaac_Newton"]


def test_dry_run_prints_the_plan_and_computes_nothing(tiny_model_dir, tmp_path, private_cache, cli):
    out = tmp_path / "out"
    run_unlearn(unlearn_job(tiny_model_dir, out, targets="1-2"))
    args = ["unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-3", "--method", "ga", "--preset", "none",
            "--sets", "forget", "--limit", "1", "--device", "cpu", "--out", str(out), "--dry-run"]
    args += [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    code, stdout, err = cli(*args)
    assert code == 0, err
    text = " ".join(stdout.split())
    assert "plan: 6 unit(s)" in text and "2 to run" in text
    assert "before │ 3 │ 2 │ 1 │ 0.0 │ 1 new" in text and "ga-lora │ 3 │ 2 │ 1 │ 0.0 │ 1 new" in text  # a tiny model
    assert not (out / "ga-lora" / "3_Wolfgang_Amadeus_Mozart").exists()


def test_every_unit_records_its_key_and_provenance(tiny_model_dir, tmp_path, private_cache):
    out = tmp_path / "out"
    run_unlearn(unlearn_job(tiny_model_dir, out, methods=("icu", "ga")))
    for run in ("before", "icu", "ga-lora"):
        summary = json.loads((out / run / "1_Isaac_Newton" / "summary.json").read_text())
        assert summary["key"]["version"] == KEY_VERSION and summary["key"]["eval"]["dtype"] == "float32"
        assert {"rwku", "torch", "transformers", "host", "device", "executor"} <= set(summary["provenance"])
    icu = json.loads((out / "icu" / "1_Isaac_Newton" / "summary.json").read_text())["key"]["method"]
    ga = json.loads((out / "ga-lora" / "1_Isaac_Newton" / "summary.json").read_text())["key"]["method"]
    assert "mode" not in icu and ga["mode"]["mode"] == "lora" and ga["corpus"]["source"] == "generated"
    assert "preset" not in ga and ga["train"]["seed"] == 42
    mean = json.loads((out / "ga-lora" / "summary.json").read_text())
    assert mean["n_targets"] == 1 and "unit" not in mean["key"]


def test_two_jobs_that_would_write_one_unit_differently_are_refused(tiny_model_dir, tmp_path):
    from rwku.errors import RwkuError

    out = tmp_path / "out"
    first = unlearn_job(tiny_model_dir, out)
    second = dataclasses.replace(first, overrides={**TINY, "lr": "5e-3"})
    with pytest.raises(RwkuError, match="ga-lora/1_Isaac_Newton: two jobs would write this unit with different settings"):
        build_plan(out, first.tasks() + second.tasks())


def test_gpu_memory_estimates_follow_model_size_mode_and_precision():
    from rwku.execution.resources import DEFAULT_MODEL_PARAMETERS, LLAMA3_8B, model_parameters, parameters_from_config, unit_memory

    assert parameters_from_config(LLAMA3_8B) == pytest.approx(8.03e9, rel=0.01)  # Llama-3-8B has 8.03 B parameters

    class Job:
        run = RunSettings(model="smollm2-135m", batch_size=32)

    def task(method, mode="full", dtype="bfloat16", **train):
        from rwku.execution.plan import UnitTask

        key = {"eval": {"dtype": dtype, "device": "cuda"}, "method": {"mode": {"mode": mode}, "train": train}}
        return UnitTask(run="r", slug="u", targets=(), job=Job(), method=method, key=key)

    parameters = 134_515_008
    assert model_parameters("smollm2-135m") == DEFAULT_MODEL_PARAMETERS == parameters
    assert unit_memory(task(None))["evaluation"].weights == parameters * 2
    ga = unit_memory(task("ga"))["training"]  # bf16 weights: float32 master weights, gradients and two moments, bf16 copies
    assert (ga.weights, ga.gradients, ga.optimizer, ga.autocast_copies) == (4 * parameters, 4 * parameters, 8 * parameters, 2 * parameters)
    assert unit_memory(task("npo"))["training"].reference_model == 0  # precomputed references: no second model
    assert unit_memory(task("ga", optimizer="adamw8bit"))["training"].optimizer == 2 * parameters
    pure = unit_memory(task("ga", precision="pure"))["training"]
    assert (pure.weights, pure.gradients, pure.optimizer) == (2 * parameters, 2 * parameters, 4 * parameters)
    lora = unit_memory(task("npo", "lora"))["training"]
    adapter = 30 * 8 * ((576 + 576) + (576 + 192))  # r = 8 on q_proj and v_proj of 30 layers
    assert (lora.weights, lora.optimizer) == (2 * parameters + 4 * adapter, 8 * adapter)
    assert unit_memory(task("ga", gradient_checkpointing="off"))["training"].activations > 5 * unit_memory(task("ga"))["training"].activations
    assert unit_memory(task("dpo"))["training"].logits == 2 * unit_memory(task("npo"))["training"].logits  # chosen and rejected rows


def test_seed_names_the_runs_so_seeds_share_one_folder(tiny_model_dir, tmp_path, cli):
    args = ["unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--method", "icu,ga", "--preset", "none",
            "--sets", "forget", "--limit", "1", "--device", "cpu", "--out", str(tmp_path / "out"), "--seed", "3", "--dry-run"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    text = " ".join(stdout.split())
    assert "ga-lora-seed3 │ 1" in text and "icu │ 1" in text
    assert "┃ run ┃ seed ┃" in text and "│ ga-lora-seed3 │ 3¹ │" in text and "¹ sweep" in text
