"""Result files: per-target summary/items and averaging over targets (the atomic JSON writes they use are in
:mod:`rwku.io`; a summary's Table-1 cells and the RWKU score are in :mod:`rwku.evaluation.table1`).

Layout of an ``--out`` folder::

    <out>/<N>_<Name>/summary.json   paper-scale numbers + config (written last: its presence = target done)
    <out>/<N>_<Name>/items.json     every probe/text/question with prompt, output, reference and score
    <out>/summary.json              mean over the finished targets (the Table-1 row)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from rwku.evaluation.sets import SCORE_SECTIONS
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
