"""Result files: per-target summary/items, averaging over targets, Table-1 cells, the RWKU score (the atomic JSON
writes they use are in :mod:`rwku.io`).

Layout of an ``--out`` folder::

    <out>/<N>_<Name>/summary.json   paper-scale numbers + config (written last: its presence = target done)
    <out>/<N>_<Name>/items.json     every probe/text/question with prompt, output, reference and score
    <out>/summary.json              mean over the finished targets (the Table-1 row)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from rwku.evaluation.sets import SCORE_SECTIONS, TABLE1_COLUMNS
from rwku.io import read_json, write_json_atomic


def get_path(summary: Mapping[str, Any], dotted: str) -> Any:
    """``get_path(s, "forget.AA_by_type.role play")`` -> the nested value, or None."""
    node: Any = summary
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def flatten(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested summary -> ``{"forget.FB": 12.3, ...}`` (numeric leaves only)."""
    flat: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return nested


#: What averaging over units averages: the scores, and the corpus coverage of trained units
#: (``rwku.corpus.coverage``: percent, found, answers).
AVERAGED_SECTIONS: tuple[str, ...] = (*SCORE_SECTIONS, "coverage")


def average_summaries(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of every score over targets (targets lacking a value are skipped for that value).

    ``n_items`` and ``seconds`` are summed instead, and ``n_targets`` says how many targets went in.
    """
    summaries = list(summaries)
    totals: dict[str, list[float]] = {}
    for summary in summaries:
        for section in AVERAGED_SECTIONS:
            if section in summary:
                for key, value in flatten({section: summary[section]}).items():
                    totals.setdefault(key, []).append(value)
    averaged = unflatten({key: sum(values) / len(values) for key, values in totals.items()})
    for counter in ("n_items", "seconds"):
        sums: dict[str, float] = {}
        for summary in summaries:
            for key, value in summary.get(counter, {}).items():
                sums[key] = sums.get(key, 0) + value
        averaged[counter] = sums
    averaged["n_targets"] = len(summaries)
    return averaged


def table1_cells(summary: Mapping[str, Any]) -> dict[str, str]:
    """The Table-1 cells of a summary by column path (``"forget.All"``), one decimal, '-' where a set was not
    evaluated."""
    cells = {}
    for column in TABLE1_COLUMNS:
        value = get_path(summary, column.path)
        cells[column.path] = "-" if value is None else f"{value:.1f}"
    return cells


class ResultStore:
    """Per-target result folders under one output directory; a target is done once its summary exists."""

    def __init__(self, root: Path):
        self.root = root

    def target_dir(self, slug: str) -> Path:
        return self.root / slug

    def summary_path(self, slug: str) -> Path:
        return self.target_dir(slug) / "summary.json"

    def load_summary(self, slug: str) -> dict[str, Any] | None:
        path = self.summary_path(slug)
        if not path.is_file():
            return None
        try:
            return read_json(path)
        except (OSError, json.JSONDecodeError):
            return None

    def save(self, slug: str, summary: Mapping[str, Any], items: Mapping[str, Any]) -> None:
        """Items first, summary last: a summary on disk always has its items beside it."""
        write_json_atomic(self.target_dir(slug) / "items.json", items)
        write_json_atomic(self.summary_path(slug), summary)


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
