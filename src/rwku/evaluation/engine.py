"""Evaluate one target's data on the chosen sets; return the Table-1 summary and every scored item."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from rwku.data.schema import TargetData
from rwku.evaluation.context import EvalContext
from rwku.evaluation.sets import expand


@dataclass
class EvalResult:
    """``summary`` holds the paper-scale numbers (see docs/evaluation.md, "Results"); ``items`` every probe behind them."""

    summary: dict[str, Any] = field(default_factory=dict)
    items: dict[str, Any] = field(default_factory=dict)


def put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """``put(d, "utility.Gen", 3.0)`` sets ``d["utility"]["Gen"]``, making the parents it needs."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def evaluate_target(ctx: EvalContext, data: TargetData, sets: Sequence[str]) -> EvalResult:
    """Run each requested set (names or groups, from the registry) on ``data``; record item counts and seconds."""
    result = EvalResult(summary={"n_items": {}, "seconds": {}})
    for eval_set in expand(sets):
        start = time.perf_counter()
        summary, items = eval_set.evaluate(ctx, data)
        put(result.summary, eval_set.summary_path, summary)
        put(result.items, eval_set.items_path, items)
        result.summary["n_items"][eval_set.name] = len(items)
        result.summary["seconds"][eval_set.name] = round(time.perf_counter() - start, 3)
    return result
