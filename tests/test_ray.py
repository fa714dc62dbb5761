"""The Ray executor on a local 2-CPU cluster that listens on 127.0.0.1 only: the same stored results as the local
executor (the job loaded once per worker), a failing unit retried then recorded while the others finish, a worker
killed mid-unit, "before" computed once and nothing on a rerun, GPU units never sharing a worker, Ctrl-C cancelling
what runs, and a cluster the executor starts itself listening on loopback only and shut down at the end (that test
runs first, before the module's shared cluster starts).

Units run in Ray worker processes, where pytest's monkeypatch does not reach: faults are injected by a job subclass
(:class:`ProbedJob`) that travels with the units. Without Ray the module is skipped, except where
``RWKU_REQUIRE_RAY=1`` (set by ``.ci/run``), where it fails instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Ray reads this once, when imported: a cluster on this machine then listens on 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
try:
    import ray
except ImportError as exc:
    message = f"the Ray executor tests need Ray ({exc}); pip install -e '.[ray]'"
    if os.environ.get("RWKU_REQUIRE_RAY") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)

import rwku.execution.executors as executors
from rwku.data import RwkuData
from rwku.evaluation.settings import RunSettings
from rwku.execution.executors import LocalExecutor, RayExecutor
from rwku.experiment import load_experiment, run_experiment
from rwku.methods.config import ModeConfig
from rwku.unlearn import UnlearnJob, run_unlearn

SMALL = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "1", "batch_size": "2",
         "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32"}
#: Summary fields that differ between two runs of the same unit: wall times, and where and by what it ran.
NOT_COMPARED = ("seconds", "provenance")
UNITS = [f"{run}/{slug}" for run in ("before", "icu", "ga-lora") for slug in ("1_Isaac_Newton", "2_Marie_Curie")]


@dataclass
class ProbedJob(UnlearnJob):
    """An unlearning job whose units say what they did: each computation appends its unit's name to ``log`` (and
    each load of the job in a worker a line to ``<log>.loads``); the unit named ``fail`` raises every time; the unit
    named ``kill`` kills its own worker process the first time (``marker`` records that it did); the units in
    ``sleep`` sleep two minutes first."""

    log: str = ""
    fail: str = ""
    kill: str = ""
    marker: str = ""
    sleep: tuple[str, ...] = ()

    def __setstate__(self, state):
        """Unpickled (in a worker): noted in ``<log>.loads``, one line per load."""
        self.__dict__.update(state)
        if self.log:
            with open(self.log + ".loads", "a") as file:
                file.write(f"{os.getpid()}\n")

    def compute(self, task, progress):
        with open(self.log, "a") as file:
            file.write(task.name + "\n")
        if task.name == self.fail:
            raise RuntimeError(f"injected failure in {task.name}")
        if task.name == self.kill and not Path(self.marker).exists():
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if task.name in self.sleep:
            time.sleep(120)
        return super().compute(task, progress)


def make_job(model_dir, out, targets="1-2", methods=("icu", "ga"), **probes):
    data = RwkuData.open(["demo"])
    run = RunSettings(model=str(model_dir), sets=("forget",), limit=1, device="cpu", dtype="float32")
    return ProbedJob(run=run, data=data, targets=data.select(targets), methods=list(methods),
                     mode=ModeConfig(mode="lora"), preset="none", overrides=dict(SMALL), out=out, **probes)


def computed(log: Path) -> list[str]:
    """The units computed so far, one line per computation (retries included)."""
    return log.read_text().split() if log.exists() else []


def stored(out: Path, unit: str) -> bool:
    return (out / unit / "summary.json").is_file() and (out / unit / "items.json").is_file()


def failures(out: Path) -> dict:
    path = out / "failures.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def compared(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key not in NOT_COMPARED}


def ray_executor(**options) -> RayExecutor:
    return RayExecutor(threads_per_unit=1, **options)  # one torch thread per worker, as in every test


def test_a_local_cluster_listens_on_loopback_even_where_ray_was_imported_without_the_variable(monkeypatch):
    """Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when imported: the executor sets it and Ray's constant before
    ``ray.init`` (recorded here by a stand-in that starts nothing), and puts both back afterwards."""
    from ray._private import ray_constants

    class Started(Exception):
        pass

    calls = []

    def init(**options):
        calls.append((os.environ.get(executors.LOOPBACK_ONLY), ray_constants.ENABLE_RAY_CLUSTER, options))
        raise Started

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)  # as if ray had been imported without the variable
    monkeypatch.delenv(executors.LOOPBACK_ONLY)
    with pytest.raises(Started):
        executors.start_local_ray(num_cpus=2, num_gpus=1)
    variable, enabled, options = calls[0]
    assert variable == "0" and enabled is False
    assert options["address"] == "local" and options["include_dashboard"] is False and options["num_cpus"] == 2
    assert ray_constants.ENABLE_RAY_CLUSTER is True and executors.LOOPBACK_ONLY not in os.environ


def test_a_cluster_the_executor_starts_listens_on_loopback_only_and_is_shut_down(tiny_model_dir, tmp_path, monkeypatch, cli):
    """``rwku eval --executor ray`` with no cluster running: the executor starts one (127.0.0.1 only, no dashboard),
    computes in its workers, and shuts it down at the end. Runs before the module's shared cluster exists."""
    assert not ray.is_initialized(), "this test must run before the module's cluster fixture starts Ray"
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    seen = {}
    real = executors.start_local_ray

    def recording(num_cpus=None):
        started = real(num_cpus)
        seen.update(node=started.util.get_node_ip_address(), gcs=started.get_runtime_context().gcs_address)
        return started

    monkeypatch.setattr(executors, "start_local_ray", recording)
    out = tmp_path / "eval"
    code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--sets", "forget",
                            "--limit", "1", "--device", "cpu", "--threads", "1", "--executor", "ray", "--out", str(out))
    assert code == 0, err
    assert seen["node"] == "127.0.0.1" and seen["gcs"].startswith("127.0.0.1:"), seen
    summary = json.loads((out / "1_Isaac_Newton" / "summary.json").read_text())
    assert summary["provenance"]["executor"] == "ray"
    printed = " ".join(err.split())  # the progress console: a line per unit with where it ran
    assert "1_Isaac_Newton ·" in printed and "pid" in printed and f"pid {os.getpid()} " not in printed
    assert not ray.is_initialized()  # the executor's own cluster is shut down at the end of its run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local cluster for the module: 2 CPUs and a logical GPU (no device: the units compute on the CPU),
    127.0.0.1 only, no dashboard. Its workers inherit the environment it starts with (a corpus cache of its own),
    and this module's classes travel to them by value."""
    saved = os.environ.get("RWKU_CACHE")
    os.environ["RWKU_CACHE"] = str(tmp_path_factory.mktemp("ray-cache"))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        executors.start_local_ray(num_cpus=2, num_gpus=1)
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        assert ray.cluster_resources()["CPU"] == 2
        yield ray
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        if saved is None:
            os.environ.pop("RWKU_CACHE", None)
        else:
            os.environ["RWKU_CACHE"] = saved


def test_ray_stores_the_same_units_as_the_local_executor(cluster, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    where = {}
    _, local_comparison = run_unlearn(make_job(tiny_model_dir, tmp_path / "local", log=str(tmp_path / "local.log")),
                                      executor=LocalExecutor())
    _, ray_comparison = run_unlearn(make_job(tiny_model_dir, tmp_path / "ray", log=str(tmp_path / "ray.log")),
                                    executor=ray_executor(), on_unit=lambda task, summary, reused, at: where.update({task.name: at}))
    assert sorted(where) == sorted(UNITS) and not any(f"pid {os.getpid()}" in at for at in where.values())
    loads = computed(tmp_path / "ray.log.loads")  # the job travels once per run and is loaded once per worker
    assert len(loads) == len(set(loads)) <= 2, loads
    for unit in UNITS:
        local, remote = tmp_path / "local" / unit, tmp_path / "ray" / unit
        assert json.loads((remote / "items.json").read_text()) == json.loads((local / "items.json").read_text()), unit
        local_summary, ray_summary = (json.loads((folder / "summary.json").read_text()) for folder in (local, remote))
        assert (local_summary["provenance"]["executor"], ray_summary["provenance"]["executor"]) == ("local", "ray")
        assert compared(ray_summary) == compared(local_summary), unit
    log = Path("ga-lora", "1_Isaac_Newton", "train_log.json")
    assert (tmp_path / "ray" / log).read_text() == (tmp_path / "local" / log).read_text()
    assert ({run: compared(row) for run, row in ray_comparison["rows"].items()}
            == {run: compared(row) for run, row in local_comparison["rows"].items()})


def test_a_failing_unit_is_retried_then_recorded_and_a_rerun_computes_only_it(cluster, tiny_model_dir, tmp_path):
    out, failing = tmp_path / "run", "ga-lora/2_Marie_Curie"
    log = tmp_path / "first.log"
    outcome, _ = run_unlearn(make_job(tiny_model_dir, out, log=str(log), fail=failing), executor=ray_executor(max_retries=2))
    assert outcome.failed == [failing]
    assert computed(log).count(failing) == 3  # the first try and max_retries=2 retries
    recorded = failures(out)[failing]
    assert recorded["attempts"] == 3 and recorded["error"] == f"RuntimeError: injected failure in {failing}"
    assert "Traceback" in recorded["traceback"] and list(failures(out)) == [failing]
    assert all(stored(out, unit) for unit in UNITS if unit != failing) and not stored(out, failing)

    log = tmp_path / "rerun.log"
    fresh = []
    outcome, _ = run_unlearn(make_job(tiny_model_dir, out, log=str(log)), executor=ray_executor(),
                             on_unit=lambda task, summary, reused, at: None if reused else fresh.append(task.name))
    assert fresh == [failing] and computed(log) == [failing] and outcome.failed == []
    assert stored(out, failing) and failures(out) == {}


def test_a_worker_killed_mid_unit_loses_nothing_finished(cluster, tiny_model_dir, tmp_path):
    out, killed = tmp_path / "run", "ga-lora/2_Marie_Curie"
    # max_retries=0: Ray does not retry the killed worker's unit; it is recorded, every other unit is stored
    log, marker = tmp_path / "first.log", tmp_path / "killed-once"
    outcome, _ = run_unlearn(make_job(tiny_model_dir, out, log=str(log), kill=killed, marker=str(marker)),
                             executor=ray_executor(max_retries=0))
    assert marker.exists() and outcome.failed == [killed]
    assert failures(out)[killed]["error"].startswith("WorkerCrashedError") and failures(out)[killed]["attempts"] == 1
    assert all(stored(out, unit) for unit in UNITS if unit != killed) and not stored(out, killed)

    # max_retries=1: the unit kills its worker again (a new marker), Ray retries it in a new worker, and it completes
    log, marker = tmp_path / "rerun.log", tmp_path / "killed-again"
    fresh = []
    outcome, _ = run_unlearn(make_job(tiny_model_dir, out, log=str(log), kill=killed, marker=str(marker)),
                             executor=ray_executor(max_retries=1),
                             on_unit=lambda task, summary, reused, at: None if reused else fresh.append(task.name))
    assert marker.exists() and computed(log) == [killed, killed] and fresh == [killed]
    assert outcome.failed == [] and failures(out) == {} and all(stored(out, unit) for unit in UNITS)


def test_before_is_computed_once_per_unit_and_a_rerun_computes_nothing(cluster, tiny_model_dir, tmp_path):
    """An experiment whose two jobs share their "before" and ICU units (LoRA and full GA): each unit computed once."""
    settings = {"model": str(tiny_model_dir), "data": "demo", "targets": "1-2", "out": str(tmp_path / "out"),
                "preset": "none", "sets": ["forget"], "limit": 1, "device": "cpu", "dtype": "float32",
                "set": {key: float(value) if key == "lr" else int(value) for key, value in SMALL.items()},
                "grids": [{"name": "main", "methods": ["icu", "ga"], "modes": ["lora", "full"]}]}
    (tmp_path / "exp.json").write_text(json.dumps(settings))
    log = tmp_path / "units.log"

    def probed():
        experiment = load_experiment(tmp_path / "exp.json")
        for planned in experiment.jobs:
            job = planned.job
            planned.job = ProbedJob(**{f.name: getattr(job, f.name) for f in dataclasses.fields(UnlearnJob)}, log=str(log))
        return experiment

    outcome = run_experiment(probed(), executor=ray_executor())
    units = [f"{run}/{slug}" for run in ("before", "icu", "ga-lora", "ga-full") for slug in ("1_Isaac_Newton", "2_Marie_Curie")]
    assert sorted(computed(log)) == sorted(units) and outcome.failed == []
    assert len(outcome.units["before"]) == 2

    again = run_experiment(probed(), executor=ray_executor())
    assert sorted(computed(log)) == sorted(units)  # nothing computed again
    assert sorted(again.reused) == sorted(units) and again.failed == []


def test_units_asking_for_a_gpu_never_share_a_worker(cluster, tiny_model_dir, tmp_path):
    """A process keeps the GPU it first used, whatever Ray assigns its next task: each GPU unit gets a fresh worker."""
    where = {}
    job = make_job(tiny_model_dir, tmp_path / "run", targets="1", methods=("icu",), log=str(tmp_path / "units.log"))
    outcome, _ = run_unlearn(job, executor=ray_executor(gpus_per_unit=1),
                             on_unit=lambda task, summary, reused, at: where.update({task.name: at}))
    assert outcome.failed == [] and sorted(where) == ["before/1_Isaac_Newton", "icu/1_Isaac_Newton"]
    assert all(at.endswith(" gpu 0") for at in where.values()), where
    assert len({at.split(" pid ")[1].split()[0] for at in where.values()}) == 2, where


def test_ctrl_c_cancels_the_units_queued_or_running(cluster, tiny_model_dir, tmp_path):
    """SIGINT to the driver while both workers sleep in a unit: KeyboardInterrupt, and both units are cancelled
    (their workers killed: the cluster's CPUs are free long before the sleeps would end)."""
    out, log = tmp_path / "run", tmp_path / "units.log"
    sleeping = ("before/1_Isaac_Newton", "icu/1_Isaac_Newton")
    job = make_job(tiny_model_dir, out, targets="1", methods=("icu", "ga"), log=str(log), sleep=sleeping)

    finished = threading.Event()

    def interrupt_once_both_sleep():
        while len(computed(log)) < 2:
            if finished.wait(0.1):
                return  # the run ended some other way: no SIGINT for the rest of the session
        os.kill(os.getpid(), signal.SIGINT)

    start = time.monotonic()
    interrupter = threading.Thread(target=interrupt_once_both_sleep, daemon=True)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_unlearn(job, executor=ray_executor())
    finally:
        finished.set()
        interrupter.join()
    assert sorted(computed(log)) == sorted(sleeping)  # the third unit (ga-lora) was queued, never started
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() - start < 60:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2 and time.monotonic() - start < 60
    assert not any(stored(out, unit) for unit in (*sleeping, "ga-lora/1_Isaac_Newton"))
