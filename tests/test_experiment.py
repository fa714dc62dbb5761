"""rwku experiment: expanding grids into jobs, one-line errors for bad files, and a resumable end-to-end run whose
folder makes a report with the trade-off, batch and layer figures."""

from __future__ import annotations

import json

import pytest

import rwku.evaluation.settings as settings_module
import rwku.unlearn as unlearn_module
from rwku.errors import RwkuError
from rwku.experiment import load_experiment, run_experiment
from rwku.report.build import build_report

TINY = {"corpus_size": 2, "question_count": 2, "corpus_max_new_tokens": 4, "epochs": 1, "batch_size": 2, "grad_accum": 1,
        "warmup_steps": 0, "lr": 1e-3, "max_length": 32}


def write(tmp_path, settings, name="exp.json"):
    path = tmp_path / name
    path.write_text(json.dumps(settings))
    return path


def base(tmp_path, model="tiny", **extra):
    return {"model": model, "data": "demo", "targets": "1-2", "out": str(tmp_path / "out"), "preset": "none",
            "sets": ["forget"], "limit": 1, "device": "cpu", "dtype": "float32", "set": TINY, **extra}


def test_grids_expand_to_named_jobs(tmp_path):
    grids = [{"name": "main", "methods": ["icu", "ga"], "modes": ["lora", "full"]},
             {"name": "repe", "methods": ["repe"], "sweep": {"alpha": [0.5, 1.5]}},
             {"name": "batch", "methods": ["npo"], "modes": ["full"], "batch_sizes": [1, 2]},
             {"name": "layers", "methods": ["ga"], "layer_windows": ["0-1", "1-2"], "set": {"epochs": 2}, "eval_epochs": True}]
    experiment = load_experiment(write(tmp_path, base(tmp_path, grids=grids)))
    names = [[p.job.run_name(m) for m in p.job.methods] for p in experiment.jobs]
    assert names == [["icu", "ga-lora"], ["icu", "ga-full"], ["repe-alpha0.5"], ["repe-alpha1.5"], ["npo-full-batch"],
                     ["npo-full-batch"], ["ga-lora-layers0-1"], ["ga-lora-layers1-2"]]
    batch = [p.job for p in experiment.jobs if p.grid == "batch"]
    assert [len(j.targets) for j in batch] == [1, 2] and all(j.setting == "batch" for j in batch)
    assert experiment.jobs[3].job.settings("repe").params.alpha == 1.5
    layers = experiment.jobs[-1].job
    assert layers.mode.train_layers == (1, 2) and layers.eval_epochs and layers.settings("ga").train.epochs == 2
    assert layers.settings("ga").train.lr == 1e-3  # the file's global "set"
    assert load_experiment(write(tmp_path, base(tmp_path, grids=grids)), out=tmp_path / "elsewhere").out == tmp_path / "elsewhere"


@pytest.mark.parametrize("change, fragment", [
    ({"grids": [{"name": "a", "methods": ["ga"], "epochs": 3}]}, "grids[0]: unknown key 'epochs'"),
    ({"grid": []}, "unknown key 'grid'"),
    ({"data": None}, "missing 'data'"),
    ({"grids": []}, "'grids' must be a non-empty list"),
    ({"grids": [{"name": "a", "methods": ["ga"], "batch_sizes": [5]}]}, "batch size 5: only 2 target(s)"),
    ({"grids": [{"name": "a", "methods": ["ga"]}, {"name": "a", "methods": ["npo"]}]}, "the name 'a' is used twice"),
    ({"grids": [{"name": "a", "methods": ["gx"]}]}, "unknown method gx"),
    ({"grids": [{"name": "a", "methods": ["ga"], "set": {"nope": 1}}]}, "unknown hyper-parameter 'nope'"),
    ({"grids": [{"name": "a", "methods": ["ga"], "layer_windows": ["3"]}]}, "expected a range like 4-8"),
    ({"grids": [{"name": "a", "methods": ["ga"]}, {"name": "b", "methods": ["ga"], "set": {"epochs": 5}}]},
     "grids 'a' and 'b' both write run 'ga-lora' with different settings"),
])
def test_bad_experiment_files_fail_with_one_line(tmp_path, change, fragment):
    settings = {**base(tmp_path, grids=[{"name": "m", "methods": ["ga"]}]), **change}
    settings = {k: v for k, v in settings.items() if v is not None}
    with pytest.raises(RwkuError) as error:
        load_experiment(write(tmp_path, settings))
    assert fragment in str(error.value) and "exp.json" in str(error.value) and "\n" not in str(error.value)


def test_unreadable_file_is_one_line(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RwkuError, match="not valid JSON"):
        load_experiment(tmp_path / "bad.json")
    with pytest.raises(RwkuError, match="cannot read"):
        load_experiment(tmp_path / "absent.json")


def test_experiment_runs_resumes_and_feeds_the_report(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    grids = [{"name": "epochs", "methods": ["ga"], "eval_epochs": True, "set": {"epochs": 2}},
             {"name": "main", "methods": ["ga"], "set": {"epochs": 2}},  # reuses the units stored with epoch points
             {"name": "repe", "methods": ["repe"], "sweep": {"alpha": [0.5, 1.0]}},
             {"name": "batch", "methods": ["ga"], "batch_sizes": [1, 2]},
             {"name": "layers", "methods": ["ga"], "layer_windows": ["0-1", "1-2"]}]
    experiment = load_experiment(write(tmp_path, base(tmp_path, model=str(tiny_model_dir), grids=grids)))
    computed = []
    real = unlearn_module.unlearn_unit

    def counting(job, task, progress):
        computed.append((task.run, task.targets[0].number, len(task.targets)))
        return real(job, task, progress)

    monkeypatch.setattr(unlearn_module, "unlearn_unit", counting)
    run_experiment(experiment)
    assert computed.count(("ga-lora", 1, 1)) == 1 and computed.count(("ga-lora", 2, 1)) == 1
    out = experiment.out
    epoch = json.loads((out / "ga-lora" / "1_Isaac_Newton" / "epochs" / "1" / "summary.json").read_text())
    assert epoch["epoch"] == 1 and epoch["forget"]["All"] is not None
    assert not (out / "ga-lora" / "1_Isaac_Newton" / "epochs" / "2").exists()  # the last epoch is the unit result
    assert (out / "ga-lora-batch" / "batch_1-2" / "summary.json").is_file() and (out / "before" / "batch_1-2").is_dir()
    assert json.loads((out / "experiment.json").read_text())["jobs"][2]["runs"] == ["repe-alpha0.5"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a stored unit was recomputed")

    monkeypatch.setattr(unlearn_module, "evaluate_target", must_not_run)
    monkeypatch.setattr(settings_module, "load_model", must_not_run)  # RunSettings.load: a fresh copy to unlearn
    run_experiment(load_experiment(write(tmp_path, base(tmp_path, model=str(tiny_model_dir), grids=grids))))

    report = build_report([out], tmp_path / "report")
    assert {"trade_off", "batch_targets", "layer_windows", "attack_types", "per_target"} <= set(report.figures)
    labels = [run.label for run, _ in report.table.rows]
    assert labels == ["before", "ga-lora"]  # batch runs, sweeps and layer windows are in their figures


def test_cli_experiment_dry_run_lists_jobs_and_bad_files_exit_2(tmp_path, monkeypatch, capsys, cli):
    monkeypatch.setenv("COLUMNS", "200")
    path = write(tmp_path, base(tmp_path, grids=[{"name": "layers", "methods": ["ga"], "layer_windows": ["0-1", "1-2"]}]))
    code, out, err = cli("experiment", str(path), "--dry-run")
    assert code == 0 and "ga-lora-layers0-1" in out and "ga-lora-layers1-2" in out and "2 job(s)" in out
    assert not (tmp_path / "out").exists()
    path = write(tmp_path, base(tmp_path, grids=[{"name": "x", "methods": ["ga"], "modes": ["qlora"]}]), "bad.json")
    code, out, err = cli("experiment", str(path))
    assert code == 2 and "choose full or lora" in err and "bad.json" in err


def test_cli_unlearn_eval_epochs_stores_each_epoch(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    overrides = [arg for key, value in {**TINY, "epochs": 3}.items() for arg in ("--set", f"{key}={value}")]
    code, out, err = cli("unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1",
                             "--method", "ga", "--preset", "none", "--sets", "forget", "--limit", "1", "--device", "cpu",
                             "--eval-epochs", "--out", str(tmp_path / "run"), *overrides)
    assert code == 0, err
    unit = tmp_path / "run" / "ga-lora" / "1_Isaac_Newton"
    assert sorted(p.name for p in (unit / "epochs").iterdir()) == ["1", "2"]
    assert json.loads((unit / "summary.json").read_text())["config"]["eval_epochs"] is True


def test_seeds_run_each_job_once_per_seed_named_by_it(tmp_path):
    experiment = load_experiment(write(tmp_path, base(tmp_path, grids=[
        {"name": "seeds", "methods": ["icu", "ga"], "seeds": [1, 2]}])))
    jobs = [planned.job for planned in experiment.jobs]
    assert [job.run_name("ga") for job in jobs] == ["ga-lora-seed1", "ga-lora-seed2"]
    assert [job.settings("ga").train.seed for job in jobs] == [1, 2]
    assert {job.run_name("icu") for job in jobs} == {"icu"}  # ICU takes no seed: one run, planned once
    with pytest.raises(RwkuError, match="unknown hyper-parameter 'seed'"):
        load_experiment(write(tmp_path, base(tmp_path, grids=[{"name": "s", "methods": ["icu"], "seeds": [1]}])))
