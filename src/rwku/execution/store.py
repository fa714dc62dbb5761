"""Writing what a unit produced, recording failures, and folder means computed from what is stored.

A unit's files travel as one :class:`UnitOutput` from wherever it ran (this process or a Ray worker) to the
driver, which writes them atomically: extra files (training log, per-epoch points) first, then the items, then the
summary, whose presence marks the unit done. Folder means are recomputed from every stored unit of the run with the
same settings, whichever process, executor or invocation wrote it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from rwku.evaluation.table1 import mean_rwku_score
from rwku.execution.key import same_key
from rwku.execution.plan import UnitTask
from rwku.io import read_json, write_json_atomic
from rwku.results import ResultStore, average_summaries


@dataclass
class UnitOutput:
    """The files of one computed unit: ``summary``, ``items``, and ``extra`` JSON files by path relative to the unit."""

    summary: dict[str, Any]
    items: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def write_unit(out: Path, task: UnitTask, output: UnitOutput) -> None:
    """Replace the unit's stored result: older per-epoch points and audits go, extra files first, the summary last."""
    store = task.store(out)
    folder = store.target_dir(task.slug)
    shutil.rmtree(folder / "epochs", ignore_errors=True)
    shutil.rmtree(folder / "audits", ignore_errors=True)
    for relative, payload in output.extra.items():
        write_json_atomic(folder / relative, payload)
    store.save(task.slug, output.summary, output.items)


def stored_units(store: ResultStore, run_key: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every unit summary in ``store`` made with ``run_key`` (its own unit aside), in folder order."""
    summaries = []
    if not store.root.is_dir():
        return summaries
    for folder in sorted(p for p in store.root.iterdir() if p.is_dir()):
        summary = store.load_summary(folder.name)
        key = (summary or {}).get("key")
        if isinstance(key, dict) and same_key({k: v for k, v in key.items() if k != "unit"}, run_key, defaults):
            summaries.append(summary)
    return summaries


def unit_targets(summary: Mapping[str, Any]) -> list[str]:
    return list(summary.get("targets") or [summary.get("target")])


def score_pairs(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping, Mapping]]:
    """(before, after) unit summaries of the same targets."""
    by_targets = {tuple(unit_targets(s)): s for s in before}
    return [(by_targets[tuple(unit_targets(s))], s) for s in after if tuple(unit_targets(s)) in by_targets]


def aggregate_run(out: Path, tasks: Sequence[UnitTask], before: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Write the run's folder mean over every stored unit with the run's settings; return those unit summaries.

    With ``before`` (the "before" units beside an unlearning run) the mean also holds the RWKU score, computed
    here from stored units and never stored in a unit, so adding it made nothing stale.
    """
    first = tasks[0]
    store = first.store(out)
    summaries = stored_units(store, first.run_key, first.defaults)
    described = {field: summaries[0][field] for field in ("model", "protocol", "config") if summaries and field in summaries[0]}
    mean = {"run": first.run or store.root.name, **described, "targets": [name for s in summaries for name in unit_targets(s)],
            "key": first.run_key, **average_summaries(summaries)}
    if before is not None:
        mean["rwku_score"] = mean_rwku_score(score_pairs(before, summaries))
    write_json_atomic(store.root / "summary.json", mean)
    return summaries


def shared_means(units: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Each run's mean over the units whose targets every run has: rows compared side by side, as the report does;
    beside a "before" run, each other row also gets its RWKU score over those targets."""
    covered = [{name for s in summaries for name in unit_targets(s)} for summaries in units.values()]
    shared = set.intersection(*covered) if covered else set()
    kept = {run: [s for s in summaries if set(unit_targets(s)) <= shared] for run, summaries in units.items()}
    rows = {run: average_summaries(summaries) for run, summaries in kept.items()}
    for run, row in rows.items():
        if run != "before" and "before" in kept:
            row["rwku_score"] = mean_rwku_score(score_pairs(kept["before"], kept[run]))
    return sorted(shared), rows


#: The roles a planted model records for its targets (``rwku.knowledge.planting.planted_roles``), in report order.
ROLES: tuple[str, ...] = ("planted", "control")


def role_means(units: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, tuple[list[str], dict[str, dict[str, Any]]]]:
    """:func:`shared_means` over the units of each role the unit summaries record (planted targets, the control),
    apart; empty when no unit records a role (the model is no planted model)."""
    present = [role for role in ROLES if any(s.get("role") == role for summaries in units.values() for s in summaries)]
    return {role: shared_means({run: [s for s in summaries if s.get("role") == role] for run, summaries in units.items()})
            for role in present}


FAILURES = "failures.json"


def record_failure(out: Path, task: UnitTask, error: str, trace: str, attempts: int) -> None:
    """Add the unit to ``<out>/failures.json`` (error, traceback, attempts, when); other units are unaffected."""
    failures = read_failures(out)
    failures[task.name] = {"error": error, "traceback": trace, "attempts": attempts,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json_atomic(out / FAILURES, failures)


def clear_failure(out: Path, task: UnitTask) -> None:
    failures = read_failures(out)
    if failures.pop(task.name, None) is not None:
        write_json_atomic(out / FAILURES, failures)


def read_failures(out: Path) -> dict[str, Any]:
    path = out / FAILURES
    try:
        found = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        found = {}
    return found if isinstance(found, dict) else {}
