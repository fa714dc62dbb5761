"""Evaluate one target's data on the chosen sets; return the Table-1 summary and every scored item."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from rwku.data.schema import TargetData
from rwku.evaluation.context import EvalContext
from rwku.evaluation.mia import evaluate_mia
from rwku.evaluation.probes import evaluate_probes
from rwku.evaluation.utility import evaluate_utility


@dataclass
class EvalResult:
    """``summary`` holds the paper-scale numbers (see README, "Summary keys"); ``items`` every probe behind them."""

    summary: dict[str, Any] = field(default_factory=dict)
    items: dict[str, Any] = field(default_factory=dict)


def first_per_level(probes: list, limit: int) -> list:
    """The first ``limit`` probes of each level, in file order."""
    kept, seen = [], {}
    for probe in probes:
        seen[probe.level] = seen.get(probe.level, 0) + 1
        if seen[probe.level] <= limit:
            kept.append(probe)
    return kept


def limit_data(data: TargetData, limit: int | None) -> TargetData:
    """Keep the first ``limit`` items of every part (each probe level, FM, RM, each utility set)."""
    if limit is None:
        return data
    return replace(
        data,
        forget=first_per_level(data.forget, limit),
        neighbor=first_per_level(data.neighbor, limit),
        forget_mia=data.forget_mia[:limit],
        retain_mia=data.retain_mia[:limit],
        mmlu=data.mmlu[:limit],
        bbh=data.bbh[:limit],
        truthful=data.truthful[:limit],
        triviaqa=data.triviaqa[:limit],
        fluency=data.fluency[:limit],
    )


def evaluate_target(ctx: EvalContext, data: TargetData, sets: Sequence[str]) -> EvalResult:
    """Run each requested set on ``data``; record item counts and wall-clock seconds per set."""
    result = EvalResult(summary={"n_items": {}, "seconds": {}})
    for set_name in sets:
        start = time.perf_counter()
        if set_name == "forget":
            summary, items = evaluate_probes(ctx, data.forget, "forget")
            n = len(items)
        elif set_name == "neighbor":
            summary, items = evaluate_probes(ctx, data.neighbor, "neighbor")
            n = len(items)
        elif set_name == "mia":
            summary, items = evaluate_mia(ctx, data.forget_mia, data.retain_mia)
            n = len(items)
        elif set_name == "utility":
            summary, items = evaluate_utility(ctx, data)
            n = sum(len(v) for v in items.values())
        else:
            raise ValueError(f"unknown set {set_name}")
        result.summary[set_name] = summary
        result.items[set_name] = items
        result.summary["n_items"][set_name] = n
        result.summary["seconds"][set_name] = round(time.perf_counter() - start, 3)
    return result
