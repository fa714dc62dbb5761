"""One plan of unit tasks for every command: compile, deduplicate, and say what is stored and what will run.

``rwku eval``, ``rwku unlearn`` and ``rwku experiment`` each compile what they were asked into unit tasks (a run,
a unit, the job that computes it, its declared key); the plan merges tasks that two jobs share (the "before" units
of an experiment, ICU and RepE asked in several modes), refuses two different computations of one folder, and
checks each task against what is stored. An executor then runs the tasks to do; aggregation reads what is stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from rwku.data.loader import RwkuData, data_fingerprint
from rwku.data.schema import Target, kinds_field
from rwku.errors import RwkuError
from rwku.evaluation.sets import parts_of, set_keys
from rwku.evaluation.settings import RunSettings
from rwku.execution.key import KEY_VERSION, differences, resolved_placement, same_key, served_identity
from rwku.models.fingerprint import model_fingerprint
from rwku.results import ResultStore

if TYPE_CHECKING:
    from rwku.evaluation.context import ProgressFactory
    from rwku.execution.store import UnitOutput


class Job(Protocol):
    """What every command's job is to the plan and the executors: how its model runs (``run``), its data, its units
    with their declared keys (``tasks``), and how one unit is computed (``compute``, wherever an executor runs it)."""

    run: RunSettings
    data: RwkuData

    def tasks(self) -> list["UnitTask"]: ...

    def compute(self, task: "UnitTask", progress: "ProgressFactory") -> "UnitOutput": ...


@dataclass
class UnitTask:
    """One unit to compute: the original model evaluated (``method`` None) or one method's unlearning of it.

    ``run`` is the folder under the output folder (``""`` for an ``rwku eval`` or ``rwku audit`` folder, whose units
    sit at its top), ``job`` the :class:`Job` that computes it (:class:`rwku.runner.EvalJob`,
    :class:`rwku.unlearn.UnlearnJob`, :class:`rwku.saved_audit.AuditJob`).
    ``defaults`` are the settings fields' defaults, which :func:`~rwku.execution.key.same_key` needs.
    """

    run: str
    slug: str
    targets: tuple[Target, ...]
    job: Job
    method: str | None
    key: dict[str, Any]
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: bool = False

    @property
    def name(self) -> str:
        return f"{self.run}/{self.slug}" if self.run else self.slug

    @property
    def run_key(self) -> dict[str, Any]:
        """The key without its unit: what every unit of the run shares (folder means average those)."""
        return {k: v for k, v in self.key.items() if k != "unit"}

    def store(self, out: Path) -> ResultStore:
        return ResultStore(out / self.run if self.run else out)


@dataclass
class Plan:
    """Tasks in the order they run ("before" units first), and for each one why it runs or that it is stored."""

    out: Path
    tasks: list[UnitTask]
    status: dict[str, str] = field(default_factory=dict)

    def to_run(self) -> list[UnitTask]:
        return [t for t in self.tasks if self.status.get(t.name) != "stored"]

    def runs(self) -> dict[str, list[UnitTask]]:
        """Tasks by run, in plan order."""
        grouped: dict[str, list[UnitTask]] = {}
        for task in self.tasks:
            grouped.setdefault(task.run, []).append(task)
        return grouped


def run_sections(run: RunSettings, preamble: str | None = None) -> dict[str, dict[str, Any]]:
    """A unit key's ``model`` and ``eval`` sections: what identifies the model, and what decides an evaluation's
    outputs (see :mod:`rwku.execution.key` for each field); ``preamble`` is ICU's."""
    return {"model": model_section(run), "eval": eval_section(run, preamble)}


def eval_section(run: RunSettings, preamble: str | None = None) -> dict[str, Any]:
    """What decides an evaluation's outputs: sets, limit, fixes, prompts, and where and how the model runs."""
    device, dtype = ("server", "server") if run.is_served else resolved_placement(run.device, run.dtype, run.kernels)
    section = {"sets": list(run.sets), "limit": run.limit, "protocol": sorted(run.protocol.fixes),
               "prompt_format": run.prompt_format, "preamble": preamble, "device": device, "dtype": dtype,
               "kernels": run.kernels}
    if run.kernels == "fast":
        section["batch_size"] = run.batch_size
    if set_keys(run.sets):  # only opt-in sets have settings of their own: other keys stay as they were
        section["set_settings"] = set_keys(run.sets)
    return section


def model_section(run: RunSettings) -> dict[str, Any]:
    """What identifies the model: its spec and a fingerprint of its files; for a served model (``openai:NAME``) what
    the server reports of it (``/v1/models``) and the tokenizer that renders its prompts."""
    if not run.is_served:
        return {"spec": run.model, "fingerprint": model_fingerprint(run.model)}
    return {"spec": run.model, "server": served_identity(run.model),
            "tokenizer": {"spec": run.prompt_tokenizer, "fingerprint": model_fingerprint(run.prompt_tokenizer)}}


def unit_key(job: Job, targets: Sequence[Target], method: dict[str, Any] | None = None,
             preamble: str | None = None) -> dict[str, Any]:
    """The declared key of one unit of ``job`` (see :mod:`rwku.execution.key` for each field)."""
    sections = run_sections(job.run, preamble)
    key: dict[str, Any] = {
        "version": KEY_VERSION,
        "model": sections["model"],
        # a target's kind decides what a method writes about it; people have no kind field and keep their old keys
        "unit": {"targets": [t.name for t in targets], "data": data_fingerprint(job.data, targets, parts_of(job.run.sets)),
                 **kinds_field(targets)},
        "eval": sections["eval"],
    }
    if method is not None:
        key["method"] = method
    return key


def add_task(tasks: dict[str, UnitTask], task: UnitTask) -> None:
    """Merge a task into the plan: the same unit asked twice runs once (per-epoch points if either asks);
    two different computations of one folder are refused."""
    found = tasks.get(task.name)
    if found is None:
        tasks[task.name] = task
        return
    if not same_key(found.key, task.key):
        raise RwkuError(f"{task.name}: two jobs would write this unit with different settings "
                        f"({differences(found.key, task.key)}); give them different run names")
    found.epochs = found.epochs or task.epochs


def status_of(task: UnitTask, out: Path, force: bool) -> str:
    """``stored`` when a unit with the same key (and per-epoch points, if asked) is on disk, else why it runs."""
    stored = task.store(out).load_summary(task.slug)
    if stored is None:
        return "new"
    if force:
        return "forced (--force)"
    if not same_key(stored.get("key"), task.key, task.defaults):
        return f"stale: {differences(stored.get('key'), task.key, task.defaults)}"
    if task.epochs and not stored.get("epoch_points"):
        return "stale: no per-epoch evaluations stored"
    return "stored"


def build_plan(out: Path, tasks: Iterable[UnitTask], force: bool = False) -> Plan:
    """Deduplicate ``tasks``, put "before" units first, and check each against the store."""
    merged: dict[str, UnitTask] = {}
    for task in tasks:
        add_task(merged, task)
    ordered = sorted(merged.values(), key=lambda t: t.method is not None)  # stable: evaluations of the original first
    plan = Plan(out=Path(out), tasks=ordered)
    plan.status = {t.name: status_of(t, plan.out, force) for t in ordered}
    return plan


def settings_defaults(settings: Any) -> dict[str, dict[str, Any]]:
    """Defaults of each settings section a method uses (``train``, ``corpus``, ``params``)."""
    return {name: {f.name: f.default for f in dataclasses.fields(type(value))} for name, value in settings.sections().items()}
