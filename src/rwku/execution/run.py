"""The driver: hand a plan's units to an executor, write each result as it arrives, record failures, and
aggregate every run from what is stored.

``rwku eval``, ``rwku unlearn`` and ``rwku experiment`` all end here, so resuming, failures, progress and folder
means behave the same for all three and for every executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from rwku.errors import RwkuError
from rwku.evaluation.context import ProgressFactory, no_progress
from rwku.execution.executors import Executor, Failure, LocalExecutor
from rwku.execution.plan import Plan, UnitTask
from rwku.execution.store import UnitOutput, aggregate_run, clear_failure, record_failure, write_unit
from rwku.interrupts import Interrupted, deferred
from rwku.models.loading import prepare_model

#: ``on_unit(task, summary, reused, where)``: a unit was stored (or found stored: ``reused``) by ``where``.
OnUnit = Callable[[UnitTask, dict, bool, str], None]
#: ``on_failure(task, failure)``: a unit failed after its retries.
OnFailure = Callable[[UnitTask, Failure], None]


@dataclass
class Outcome:
    """What a run of a plan did: every run's stored unit summaries (its folder mean averages them), the units
    that failed, those found stored and those computed now."""

    units: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)


def execute(plan: Plan, executor: Executor | None = None, progress: ProgressFactory = no_progress,
            on_unit: OnUnit | None = None, on_failure: OnFailure | None = None) -> Outcome:
    """Compute every unit the plan has to run, store each as it comes back, then write every run's mean.

    A unit's files are written with signals deferred (:func:`rwku.interrupts.deferred`): an interrupt leaves each
    unit wholly stored or not at all, and says how many of the plan's units are stored.
    """
    executor = executor or LocalExecutor()
    outcome = Outcome()
    for task in plan.tasks:
        if plan.status[task.name] == "stored":
            outcome.reused.append(task.name)
            if on_unit is not None:
                on_unit(task, task.store(plan.out).load_summary(task.slug) or {}, True, "stored")
    to_run = plan.to_run()
    try:
        compute_units(plan, to_run, executor, progress, outcome, on_unit, on_failure)
    except Interrupted as exc:
        stored = len(plan.tasks) - len(to_run) + len(outcome.computed)
        exc.detail, exc.again = f"{stored} of {len(plan.tasks)} unit(s) stored in {plan.out}, none half-written", "continues"
        raise
    runs = plan.runs()
    if "before" in runs:  # unlearning runs: "before" first, so each other run's mean gets its RWKU score
        outcome.units["before"] = aggregate_run(plan.out, runs.pop("before"))
    for run, tasks in runs.items():  # evaluations of a model (a reference) get no RWKU score
        outcome.units[run] = aggregate_run(plan.out, tasks, outcome.units.get("before") if tasks[0].method else None)
    return outcome


def compute_units(plan: Plan, to_run: list[UnitTask], executor: Executor, progress: ProgressFactory, outcome: Outcome,
                  on_unit: OnUnit | None, on_failure: OnFailure | None) -> None:
    """Prepare the models, hand ``to_run`` to the executor, and store or record each unit as it comes back."""
    for spec in sorted({task.job.run.model for task in to_run}):
        prepare_model(spec)
    with progress(f"units ({executor.name})", len(to_run)) as advance:
        def done(task: UnitTask, output: UnitOutput | None, failure: Failure | None, where: str) -> None:
            if output is not None:
                output.summary.setdefault("provenance", {})["executor"] = executor.name
                with deferred():
                    write_unit(plan.out, task, output)
                    clear_failure(plan.out, task)
                outcome.computed.append(task.name)
                if on_unit is not None:
                    on_unit(task, output.summary, False, where)
            elif failure.user_error and task.method is None:
                # every unit evaluates the original model the same way: a user error there (no chat template...)
                # would fail them all, so the run ends here with that one line
                raise RwkuError(failure.error)
            else:
                record_failure(plan.out, task, failure.error, failure.traceback, failure.attempts)
                outcome.failed.append(task.name)
                if on_failure is not None:
                    on_failure(task, failure)
            advance(1)

        executor.run(to_run, progress, done)
