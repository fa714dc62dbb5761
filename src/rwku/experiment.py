"""Experiment grids: the paper's studies from one JSON file, run through the unlearning runner into one folder.

A file names the model, data, targets and output folder once, then a list of grids. Each grid expands to
unlearning jobs (:class:`rwku.unlearn.UnlearnJob`); all jobs share the folder, so the "before" evaluation is
made once per unit, a unit several jobs share (ICU or RepE asked in several modes) once, and every finished unit is
reused when the experiment is run again (resume); all jobs' units form one plan for one executor::

    {"model": "smollm2-135m", "data": "demo", "targets": "all", "out": "runs/exp", "preset": "small",
     "grids": [
       {"name": "main",    "methods": ["icu", "repe", "ga", "npo", "rt"], "modes": ["lora", "full"]},
       {"name": "epochs",  "methods": ["ga", "npo"], "eval_epochs": true, "set": {"epochs": 4}},
       {"name": "repe",    "methods": ["repe"], "sweep": {"alpha": [0.1, 0.25, 0.5]}},
       {"name": "batch",   "methods": ["ga", "npo"], "modes": ["full"], "batch_sizes": [10, 20, 30, 40, 50]},
       {"name": "layers",  "methods": ["npo"], "modes": ["full"], "layer_windows": ["0-8", "8-16", "16-24"]}]}

``seeds`` runs each job once per training seed (``ga-lora-seed1`` ...; the report pools them into one row with its
interval over seeds × targets); ``batch_sizes`` runs the batch setting on the first N selected targets for each N (paper Fig. 5);
``layer_windows`` trains only those decoder layers (Fig. 7); ``sweep`` runs one job per value, named by it
(``repe-alpha0.5``: Fig. 3's RepE strengths); ``eval_epochs`` stores an evaluation after every epoch (Fig. 3);
``audit`` runs audits on each unit's unlearned model (``["quant4", "relearn"]``, see :mod:`rwku.audits`), with the
file's ``audit_set`` overriding their settings. ``"setting": "sequential"`` unlearns the grid's targets one after
another on one model (:mod:`rwku.sequential`), evaluating utility at the last step and at ``utility_steps``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rwku.audits import parse_audits
from rwku.data.loader import RwkuData
from rwku.errors import RwkuError
from rwku.evaluation.context import ProgressFactory, no_progress
from rwku.evaluation.protocol import Protocol
from rwku.evaluation.sets import parse_sets
from rwku.evaluation.settings import RunSettings
from rwku.execution.executors import Executor
from rwku.execution.plan import Plan, build_plan
from rwku.execution.run import OnUnit, Outcome, execute
from rwku.methods import METHODS
from rwku.methods.config import ModeConfig, check_known_keys, choose_preset, parse_range
from rwku.io import write_json_atomic
from rwku.unlearn import UnlearnJob, check_job, parse_methods

REQUIRED = object()  # marks a key without a default

RUN_DEFAULTS = RunSettings()

#: Top-level keys of an experiment file and their defaults (how the model runs: :class:`RunSettings`'s).
EXPERIMENT_KEYS: dict[str, Any] = {
    "model": RUN_DEFAULTS.model, "data": REQUIRED, "targets": "all", "out": REQUIRED, "preset": "auto",
    "limit": RUN_DEFAULTS.limit, "sets": "all", "batch_size": RUN_DEFAULTS.batch_size, "fix": [],
    "prompt_format": RUN_DEFAULTS.prompt_format, "corpus": "generated", "device": RUN_DEFAULTS.device,
    "dtype": RUN_DEFAULTS.dtype, "kernels": RUN_DEFAULTS.kernels, "set": {}, "mode_options": {}, "audit_set": {},
    "grids": REQUIRED,
}
#: Keys of one grid and their defaults.
GRID_KEYS: dict[str, Any] = {
    "name": REQUIRED, "methods": REQUIRED, "modes": ["lora"], "setting": "single", "targets": None, "eval_epochs": False,
    "set": {}, "sweep": {}, "seeds": None, "batch_sizes": None, "layer_windows": None, "audit": [], "utility_steps": [],
}


@dataclass
class PlannedJob:
    """One job of an experiment: which grid it came from, a readable description, and the job itself."""

    grid: str
    description: str
    job: UnlearnJob


@dataclass
class Experiment:
    """A parsed experiment file: the shared settings and the expanded jobs."""

    path: Path
    out: Path
    settings: dict[str, Any]
    jobs: list[PlannedJob] = field(default_factory=list)


def with_defaults(values: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` over ``defaults``; an unknown or missing required key is a one-line error naming ``where``."""
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise RwkuError(f"{where}: unknown key {', '.join(map(repr, unknown))}; known: {', '.join(defaults)}")
    merged = {**defaults, **values}
    missing = [key for key, value in merged.items() if value is REQUIRED]
    if missing:
        raise RwkuError(f"{where}: missing {', '.join(map(repr, missing))}")
    return merged


def as_list(value: Any) -> list[Any]:
    return [v for v in value.split(",") if v] if isinstance(value, str) else list(value)


def load_experiment(path: Path, out: Path | None = None) -> Experiment:
    """Read and expand an experiment file; every mistake (file, key, method, data, target) fails here."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RwkuError(f"{path}: cannot read the experiment file ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise RwkuError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(raw, dict):
        raise RwkuError(f"{path}: expected a JSON object with 'data', 'out' and 'grids'")
    settings = with_defaults(raw if out is None else {**raw, "out": str(out)}, EXPERIMENT_KEYS, str(path))
    if not isinstance(settings["grids"], list) or not settings["grids"]:
        raise RwkuError(f"{path}: 'grids' must be a non-empty list")
    data = RwkuData.open(as_list(settings["data"]))
    experiment = Experiment(path=Path(path), out=Path(settings["out"]), settings=settings)
    names = set()
    for index, grid in enumerate(settings["grids"]):
        where = f"{path}: grids[{index}]"
        if not isinstance(grid, dict):
            raise RwkuError(f"{where}: expected an object")
        grid = with_defaults(grid, GRID_KEYS, where)
        if grid["name"] in names:
            raise RwkuError(f"{where}: the name {grid['name']!r} is used twice")
        names.add(grid["name"])
        try:
            experiment.jobs.extend(expand_grid(grid, settings, data))
        except RwkuError as exc:
            raise RwkuError(f"{where} ({grid['name']}): {exc}") from exc
    check_known_keys(sorted({METHODS[m] for p in experiment.jobs for m in p.job.methods}, key=lambda m: m.name),
                     {f"{path}: set": settings["set"]})
    check_run_names(experiment.jobs, path)
    return experiment


def check_run_names(jobs: list[PlannedJob], path: Path) -> None:
    """Two grids writing one run folder with different settings would overwrite each other's units forever."""
    seen: dict[str, tuple[str, Any]] = {}
    for planned in jobs:
        for method in planned.job.methods:
            name = planned.job.run_name(method)
            mode = dataclasses.asdict(planned.job.mode) if METHODS[method].trains else None  # ICU/RepE ignore the mode
            settings = (planned.job.settings(method).as_config(), mode)
            if name in seen and seen[name][1] != settings:
                raise RwkuError(f"{path}: grids {seen[name][0]!r} and {planned.grid!r} both write run {name!r} with "
                                f"different settings; use a sweep or one grid for it")
            seen.setdefault(name, (planned.grid, settings))


def expand_grid(grid: dict[str, Any], settings: dict[str, Any], data: RwkuData) -> list[PlannedJob]:
    """methods × modes × layer windows × sweep values × batch sizes -> jobs (one per mode/window/value/size)."""
    methods = parse_methods(grid["methods"])
    check_known_keys([METHODS[m] for m in methods], {"set": grid["set"], "sweep": grid["sweep"],
                                                      "seeds": {"seed": grid["seeds"]} if grid["seeds"] else {}})
    preset, preset_reason = choose_preset(settings["preset"], settings["model"])
    targets = data.select(str(grid["targets"] or settings["targets"]))
    windows = [parse_range(w) for w in as_list(grid["layer_windows"])] if grid["layer_windows"] else [None]
    sweep = {**grid["sweep"], **({"seed": [int(s) for s in as_list(grid["seeds"])]} if grid["seeds"] else {})}
    sweep_keys = list(sweep)
    sweep_values = list(itertools.product(*(as_list(sweep[k]) for k in sweep_keys))) if sweep_keys else [()]
    sizes: list[int | None] = [int(n) for n in grid["batch_sizes"]] if grid["batch_sizes"] else [None]
    too_many = [n for n in sizes if n is not None and not 1 <= n <= len(targets)]
    if too_many:
        raise RwkuError(f"batch size {too_many[0]}: only {len(targets)} target(s) are selected")
    planned = []
    run = run_settings(settings)
    for mode, window, values, size in itertools.product(as_list(grid["modes"]), windows, sweep_values, sizes):
        job = UnlearnJob(
            run=run, data=data, targets=targets[:size] if size else targets, methods=methods,
            mode=ModeConfig(mode=mode, train_layers=window, **settings["mode_options"]),
            setting="batch" if size else grid["setting"],
            preset=preset, preset_reason=preset_reason,
            overrides={**settings["set"], **grid["set"]}, corpus_source=settings["corpus"], eval_epochs=bool(grid["eval_epochs"]),
            sweep=dict(zip(sweep_keys, values)), out=Path(settings["out"]),
            audits=parse_audits(grid["audit"]), audit_overrides=dict(settings["audit_set"]),
            utility_steps=tuple(int(n) for n in as_list(grid["utility_steps"])),
        )
        check_job(job, check_keys=False)
        runs = ", ".join(job.run_name(m) for m in methods)
        scope = f"pooled {len(job.targets)} target(s)" if job.setting == "batch" else f"{len(job.targets)} target(s)"
        planned.append(PlannedJob(grid=grid["name"], description=f"{runs} · {scope}", job=job))
    return planned


def run_settings(settings: Mapping[str, Any]) -> RunSettings:
    """How every job of the file runs its model, from the file's top-level keys."""
    return RunSettings(model=settings["model"], sets=parse_sets(",".join(as_list(settings["sets"]))), limit=settings["limit"],
                       protocol=Protocol.from_names(as_list(settings["fix"])), prompt_format=settings["prompt_format"],
                       device=settings["device"], dtype=settings["dtype"], kernels=settings["kernels"],
                       batch_size=int(settings["batch_size"]))


def experiment_plan(experiment: Experiment, force: bool = False) -> Plan:
    """Every job's units in one plan: the "before" units and ICU/RepE units that several jobs share run once."""
    return build_plan(experiment.out, [task for planned in experiment.jobs for task in planned.job.tasks()], force=force)


def record_experiment(experiment: Experiment) -> None:
    """``<out>/experiment.json``: the file, its settings and the expanded jobs, written before anything runs."""
    write_json_atomic(experiment.out / "experiment.json", {
        "file": str(experiment.path), "settings": experiment.settings,
        "jobs": [{"grid": p.grid, "description": p.description, "runs": [p.job.run_name(m) for m in p.job.methods],
                  "targets": [t.name for t in p.job.targets], "setting": p.job.setting,
                  "mode": dataclasses.asdict(p.job.mode)} for p in experiment.jobs],
    })


def run_experiment(experiment: Experiment, *, force: bool = False, executor: Executor | None = None,
                   progress: ProgressFactory = no_progress, on_unit: OnUnit | None = None) -> Outcome:
    """``rwku experiment`` from Python: record the experiment, then compute every unit of its plan not yet stored."""
    plan = experiment_plan(experiment, force=force)
    record_experiment(experiment)
    return execute(plan, executor, progress, on_unit)
