"""Find stored results under run folders and describe each run: what method, mode, setting and variant made it.

Two layouts are read:

* ``rwku unlearn`` / ``rwku experiment`` folders: ``<dir>/<run>/<unit>/summary.json`` (``before`` is a run), and
  per-epoch points ``<dir>/<run>/<unit>/epochs/<k>/summary.json``;
* ``rwku eval`` folders: ``<dir>/<N_Name>/summary.json``: the folder is one run, named after the folder.

Audits of a unit (``rwku unlearn --audit``, ``rwku audit``) are read from ``<unit>/audits/<name>/``. A folder's
``reference/`` (a planted model's never-taught base, :mod:`rwku.evaluation.reference`) is no run: every run of the
folder carries its units as ``Run.reference``.

Only unit summaries are read (never the folder means), so a report always averages exactly what it shows.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from rwku.audits import AUDITS
from rwku.errors import RwkuError
from rwku.evaluation.reference import REFERENCE_RUN
from rwku.evaluation.sets import PROBE_SETS
from rwku.methods import METHODS
from rwku.io import read_json
from rwku.results import ResultStore, average_summaries

PROBE_FIELDS = ("level", "type", "query", "reference", "output", "score")


@dataclass
class Unit:
    """One stored unit result (a target, or pooled targets): its folder and summary; items load on demand."""

    path: Path
    summary: dict[str, Any]

    @property
    def slug(self) -> str:
        return self.path.name if self.path.parent.name != "epochs" else self.path.parent.parent.name

    @property
    def targets(self) -> list[str]:
        """Names of the targets in the unit (a pooled batch unit has several)."""
        names = self.summary.get("targets")
        return list(names) if names else [str(self.summary.get("target", self.slug))]

    @cached_property
    def items(self) -> dict[str, Any]:
        """The parts of ``items.json`` a report shows: probes (without prompts) and MIA attack scores.

        Utility items and prompts are most of the file and no figure needs them; dropping them keeps a report over
        200 targets × many runs in memory.
        """
        path = self.path / "items.json"
        stored = read_json(path) if path.is_file() else {}
        kept: dict[str, Any] = {part: [{k: item.get(k) for k in PROBE_FIELDS} for item in stored.get(part) or []]
                                for part in PROBE_SETS}
        kept["mia"] = [{"set": text.get("set"), "attacks": text.get("attacks") or {}} for text in stored.get("mia") or []]
        return kept

    @cached_property
    def audits(self) -> dict[str, dict[str, Any]]:
        """The unit's stored audit summaries by audit name, in registry order."""
        folder = self.path / "audits"
        paths = {name: folder / name / "summary.json" for name in AUDITS}
        return {name: read_json(path) for name, path in paths.items() if path.is_file()}

    def audit_items(self, name: str) -> dict[str, Any]:
        """An audit's per-probe items (``forget``: each probe's output and score under the attack)."""
        path = self.path / "audits" / name / "items.json"
        return read_json(path) if path.is_file() else {}


@dataclass
class Run:
    """A run: one method variant over its units, with per-epoch points where the runner recorded them."""

    label: str
    name: str
    folder: Path
    units: dict[str, Unit]
    epochs: dict[str, dict[int, Unit]] = field(default_factory=dict)
    seeds: list["Run"] = field(default_factory=list)  # a Table-1 row pooling one configuration's runs over seeds
    reference: dict[str, Unit] = field(default_factory=dict)  # the folder's never-taught reference units (planted targets)

    @property
    def config(self) -> dict[str, Any]:
        return next(iter(self.units.values())).summary.get("config", {})

    @property
    def model(self) -> str:
        return str(next(iter(self.units.values())).summary.get("model", ""))

    @property
    def method(self) -> str:
        return str(self.config.get("method", "before" if self.name == "before" else "eval"))

    @property
    def is_before(self) -> bool:
        return self.method == "before"

    @property
    def setting(self) -> str:
        return str(self.config.get("setting", "single"))

    @property
    def mode(self) -> str:
        return str((self.config.get("mode") or {}).get("mode", ""))

    @property
    def layers(self) -> tuple[int, int] | None:
        window = (self.config.get("mode") or {}).get("train_layers")
        return (int(window[0]), int(window[1])) if window else None

    @property
    def sweep(self) -> dict[str, Any]:
        """Swept values, the seed aside (runs that differ only in their seed are one configuration)."""
        return {k: v for k, v in (self.config.get("sweep") or {}).items() if k != "seed"}

    @property
    def seed(self) -> Any:
        return (self.config.get("sweep") or {}).get("seed")

    def setting_value(self, key: str) -> Any:
        """A training, corpus or method setting of the run (``epochs``, ``alpha`` ...), or None."""
        for section in ("train", "params", "corpus"):
            values = self.config.get(section)
            if isinstance(values, dict) and key in values:
                return values[key]
        return None

    @property
    def family(self) -> tuple[str, str, str, str]:
        """Runs that differ only in a swept value or a layer window belong together in a figure."""
        return (str(self.folder), self.method, self.mode, self.setting)

    def mean(self, slugs: Sequence[str] | None = None) -> dict[str, Any]:
        """Mean summary over ``slugs`` (default: every unit)."""
        chosen = [self.units[s] for s in (slugs if slugs is not None else self.units)]
        return average_summaries(u.summary for u in chosen)

    def epoch_means(self, slugs: Sequence[str]) -> dict[int, dict[str, Any]]:
        """Epoch -> mean summary over ``slugs``, for epochs every slug has (the last epoch is the final result)."""
        common = set.intersection(*(set(self.epochs.get(s, {})) for s in slugs)) if slugs else set()
        means = {k: average_summaries(self.epochs[s][k].summary for s in slugs) for k in sorted(common)}
        final = self.setting_value("epochs")
        if means and final is not None:
            means[int(final)] = self.mean(slugs)
        return means


def unit_summary(store: ResultStore, slug: str) -> dict[str, Any] | None:
    """A unit summary (it names its target; folder means do not), or None for a mean, a file being written or a
    broken one (left out, not fatal)."""
    summary = store.load_summary(slug)
    return summary if isinstance(summary, dict) and "target" in summary else None


def unit_folders(folder: Path) -> dict[str, Unit]:
    store = ResultStore(folder)
    units = {}
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "epochs"):
        summary = unit_summary(store, child.name)
        if summary is not None:
            units[child.name] = Unit(child, summary)
    return units


def epoch_folders(unit_dir: Path) -> dict[int, Unit]:
    points = {}
    store = ResultStore(unit_dir / "epochs")
    if store.root.is_dir():
        for child in store.root.iterdir():
            summary = unit_summary(store, child.name) if child.name.isdigit() else None
            if summary is not None:
                points[int(child.name)] = Unit(child, summary)
    return dict(sorted(points.items()))


def has_runs(folder: Path) -> bool:
    """Whether ``folder`` holds stored unit results (as an eval folder, or runs one level down)."""
    folder = Path(folder)
    return folder.is_dir() and (bool(unit_folders(folder))
                                or any(unit_folders(child) for child in folder.iterdir() if child.is_dir()))


def runs_in(folder: Path) -> list[Run]:
    """The runs stored under one folder given on the command line."""
    if not folder.is_dir():
        raise RwkuError(f"{folder}: no such folder; give folders written by rwku eval, unlearn or experiment")
    direct = unit_folders(folder)
    if direct:  # an rwku eval folder: the folder itself is the run
        return [Run(label=folder.name, name=folder.name, folder=folder, units=direct)]
    runs = []
    reference = unit_folders(folder / REFERENCE_RUN) if (folder / REFERENCE_RUN).is_dir() else {}
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != REFERENCE_RUN):
        units = unit_folders(child)
        if units:
            epochs = {slug: points for slug, unit in units.items() if (points := epoch_folders(unit.path))}
            runs.append(Run(label=child.name, name=child.name, folder=folder, units=units, epochs=epochs, reference=reference))
    if not runs:
        raise RwkuError(f"{folder}: no stored results (expected <run>/<target>/summary.json or <target>/summary.json)")
    return runs


def collect_runs(folders: Sequence[Path], patterns: Sequence[str] = ()) -> list[Run]:
    """Every run under ``folders``, ``before`` first; labels get the folder name when two folders share a run name.

    ``patterns`` (shell globs on labels, e.g. ``"*-lora"``) keep only matching runs (``before`` runs always stay).
    """
    runs = [run for folder in folders for run in runs_in(Path(folder))]
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        if counts[run.name] > 1:
            run.label = f"{run.folder.name}/{run.name}"
    if len({run.label for run in runs}) < len(runs):
        raise RwkuError("two run folders have the same name and the same runs; give folders with distinct names")
    if patterns:
        runs = [r for r in runs if r.is_before or any(fnmatch.fnmatch(r.label, p) for p in patterns)]
        if all(r.is_before for r in runs):
            raise RwkuError(f"--runs {' '.join(patterns)}: no run matches")
    folders_order = {str(Path(f)): i for i, f in enumerate(folders)}
    return sorted(runs, key=lambda r: (folders_order.get(str(r.folder), 0), *paper_order(r)))


#: Before, then the registry's order: the paper's Table 1 (ICU, RepE, GA, GA*, DPO, NPO, RT), then the methods beyond
#: it; full tuning before LoRA.
METHOD_ORDER = ("before", *METHODS)
MODE_ORDER = ("", "full", "lora")


def paper_order(run: Run) -> tuple:
    """Sort key within a folder: method, mode, then variants (layer window, swept values), single before batch."""
    method = METHOD_ORDER.index(run.method) if run.method in METHOD_ORDER else len(METHOD_ORDER)
    mode = MODE_ORDER.index(run.mode) if run.mode in MODE_ORDER else len(MODE_ORDER)
    sweep = tuple((k, float(v) if isinstance(v, (int, float)) else 0.0, str(v)) for k, v in sorted(run.sweep.items()))
    return method, run.setting == "batch", mode, run.layers or (-1, -1), sweep, run.label


def method_legend(runs: Sequence[Run]) -> list[tuple[str, str, str]]:
    """(method, what it does, the paper it comes from) for each registered method among ``runs``, in report order."""
    shown = {run.method for run in runs}
    return [(name, cls.description, cls.paper) for name, cls in METHODS.items() if name in shown]
