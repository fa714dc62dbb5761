"""What a summary shows in Table 1: its cells, and the RWKU score that sums up one target's unlearning.

Both read unit summaries (the numbers :mod:`rwku.evaluation.engine` writes) and nothing else, so the run commands,
the stored folder means (:mod:`rwku.execution.store`) and the report compute them the same way.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from rwku.evaluation.sets import TABLE1_COLUMNS
from rwku.results import get_path


def table1_cells(summary: Mapping[str, Any]) -> dict[str, str]:
    """The Table-1 cells of a summary by column path (``"forget.All"``), one decimal, '-' where a set was not
    evaluated."""
    cells = {}
    for column in TABLE1_COLUMNS:
        value = get_path(summary, column.path)
        cells[column.path] = "-" if value is None else f"{value:.1f}"
    return cells


# ------------------------------------------------------------------ the RWKU score: one number for the trade-off

#: Below this "before" forget All (points) a target has nothing measurable to forget: no efficacy, left out.
MIN_FORGET_BEFORE = 5.0
UTILITY_COLUMNS = ("utility.Gen", "utility.Rea", "utility.Tru", "utility.Fac", "utility.Flu")


def capped(value: float) -> float:
    return min(1.0, max(0.0, value))


def rwku_score(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float] | None:
    """Efficacy, locality and utility of one target's unlearning, each in [0, 1], and their harmonic mean × 100.

    efficacy = (forget All before − after) / before; locality = neighbour All after / before (1 where the model
    knew no neighbour fact before); utility = the mean over the utility columns both summaries have of after /
    before. None when forget All before is under :data:`MIN_FORGET_BEFORE` (nothing to forget) or a part is
    missing; a zero part gives a score of 0.
    """
    forget_before, forget_after = get_path(before, "forget.All"), get_path(after, "forget.All")
    neighbor_before, neighbor_after = get_path(before, "neighbor.All"), get_path(after, "neighbor.All")
    if forget_before is None or forget_after is None or forget_before < MIN_FORGET_BEFORE:
        return None
    ratios = [capped(get_path(after, c) / get_path(before, c)) for c in UTILITY_COLUMNS
              if get_path(before, c) and get_path(after, c) is not None]
    if neighbor_before is None or neighbor_after is None or not ratios:
        return None
    parts = {"efficacy": capped((forget_before - forget_after) / forget_before),
             "locality": capped(neighbor_after / neighbor_before) if neighbor_before else 1.0,
             "utility": sum(ratios) / len(ratios)}
    score = 0.0 if min(parts.values()) == 0 else 100 * len(parts) / sum(1 / v for v in parts.values())
    return {**parts, "score": score}


def mean_rwku_score(pairs: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """The RWKU score per target (``pairs`` of before and after unit summaries), averaged over the targets that
    have one; ``left_out`` counts the targets without (forget All before under 5, or a missing set)."""
    scores = [rwku_score(before, after) for before, after in pairs]
    kept = [s for s in scores if s is not None]
    mean = {key: sum(s[key] for s in kept) / len(kept) for key in ("score", "efficacy", "locality", "utility")} if kept else {}
    return {**mean, "n_targets": len(kept), "left_out": len(scores) - len(kept)}
