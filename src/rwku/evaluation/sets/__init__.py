"""The evaluation-set registry: every set rwku can run, in the paper's column order.

Adding a set (a probe type, a utility benchmark, an audit) is one module defining an
:class:`~rwku.evaluation.sets.base.EvalSet` and one line in :data:`SETS`.
"""

from __future__ import annotations

from typing import Any, Sequence

from rwku.data.loader import RwkuData
from rwku.data.schema import PASSAGE, Part, Target, TargetData, limit_data
from rwku.errors import RwkuError
from rwku.evaluation.sets.base import Column, EvalSet
from rwku.evaluation.sets.bbh import BBH
from rwku.evaluation.sets.fluency import FLUENCY
from rwku.evaluation.sets.mia import MIA
from rwku.evaluation.sets.mmlu import MMLU
from rwku.evaluation.sets.probes import FORGET, NEIGHBOR
from rwku.evaluation.sets.triviaqa import TRIVIAQA
from rwku.evaluation.sets.truthful import TRUTHFUL
from rwku.evaluation.sets.verbmem import VERBMEM

SETS: dict[str, EvalSet] = {s.name: s for s in (FORGET, NEIGHBOR, MIA, MMLU, BBH, TRUTHFUL, TRIVIAQA, FLUENCY, VERBMEM)}

#: Names ``--sets`` accepts for several sets at once (``utility``: the paper's five utility columns).
GROUPS: dict[str, tuple[str, ...]] = {}
for _set in SETS.values():
    if _set.group:
        GROUPS.setdefault(_set.group, ())
        GROUPS[_set.group] += (_set.name,)

#: Every Table-1 column, in registry order.
TABLE1_COLUMNS: tuple[Column, ...] = tuple(column for s in SETS.values() for column in s.columns)

#: Top-level keys of a unit summary that hold scores (what averaging over units averages).
SCORE_SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.summary_path.split(".")[0] for s in SETS.values()))

#: Sets whose items are probes with an output and a reference (the report's case study shows them).
PROBE_SETS: tuple[str, ...] = tuple(s.name for s in SETS.values() if s.case_study)


def expand(names: Sequence[str]) -> list[EvalSet]:
    """Registry entries of set and group names, in registry order, each once."""
    wanted = {member for name in names for member in GROUPS.get(name, (name,))}
    return [s for s in SETS.values() if s.name in wanted]


def canonical(sets: Sequence[EvalSet]) -> tuple[str, ...]:
    """Names in registry order, a complete group written as its group name (what configs store)."""
    chosen = {s.name for s in sets}
    names: list[str] = []
    for s in SETS.values():
        if s.name not in chosen:
            continue
        label = s.group if s.group and set(GROUPS[s.group]) <= chosen else s.name
        if label not in names:
            names.append(label)
    return tuple(names)


def parse_sets(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"forget,utility"`` or ``["mia", "mmlu"]`` -> canonical names; ``all`` means every set but the opt-in ones
    (``verbmem``), which are named: ``all,verbmem``."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if "all" in names:
        names = [*(s.name for s in SETS.values() if s.in_all), *(n for n in names if n != "all")]
    unknown = [n for n in names if n not in SETS and n not in GROUPS]
    if unknown or not names:
        choices = ", ".join([*SETS, *GROUPS])
        raise RwkuError(f"--sets {','.join(names) or '(empty)'}: unknown set {', '.join(unknown)}; choose from {choices} or all")
    return canonical(expand(names))


def parts_of(names: Sequence[str]) -> tuple[Part, ...]:
    """The data parts the named sets read, each once."""
    return tuple(dict.fromkeys(part for s in expand(names) for part in s.parts))


def load_target(data: RwkuData, target: Target, sets: Sequence[str], limit: int | None = None) -> TargetData:
    """The records the named sets evaluate for ``target``, each part cut to ``limit`` by its own rule."""
    parts = parts_of(sets)
    return limit_data(data.load(target, parts), parts, limit)


def set_keys(names: Sequence[str]) -> dict[str, Any]:
    """The own settings (:attr:`EvalSet.key`) of the chosen sets that have any, by set name (empty for the others)."""
    return {s.name: dict(s.key) for s in expand(names) if s.key}


def files_of(name: str) -> tuple[str, ...]:
    """The official files a set or group reads (``files_of("forget")`` -> the three forget levels)."""
    return tuple(file for part in parts_of([name]) for file in part.files)


#: The default selection: every set but the opt-in ones, with group names (``forget, neighbor, mia, utility``).
DEFAULT_SETS: tuple[str, ...] = parse_sets("all")

#: Every part a target may have: what the sets read, and GA*'s passages (``rwku data info`` counts them all).
ALL_PARTS: tuple[Part, ...] = (*parts_of(DEFAULT_SETS), PASSAGE)

__all__ = ["ALL_PARTS", "Column", "DEFAULT_SETS", "EvalSet", "GROUPS", "PROBE_SETS", "SCORE_SECTIONS", "SETS", "TABLE1_COLUMNS",
           "canonical", "expand", "files_of", "load_target", "parse_sets", "parts_of", "set_keys"]
