"""Invariant kernels (the default): every probe output and score is the same at any batch size and any --limit,
for the items two runs share; on a tiny random model (every set) and on the default model (integration)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from rwku.data import RwkuData
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.models.prompting import PromptFormat
from rwku.results import flatten

SETS = ("forget", "neighbor", "mia", "utility")
BATCH_SIZES = (1, 8, 32, 128)
LIMITS = (2, 5, None)


def items_by_identity(items: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every scored item of a run under (its part, its prompt or text), so runs with different limits line up."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for part, value in items.items():
        rows = value if isinstance(value, list) else [row for sub in value.values() for row in sub]
        for row in rows:
            found[(part, row.get("prompt") or row["text"])] = row
    return found


def evaluate(lm, data, batch_size: int, sets=SETS):
    return evaluate_target(EvalContext(lm=lm, prompts=PromptFormat(lm.tokenizer), batch_size=batch_size), data, sets)


def means(result) -> dict[str, Any]:
    """A run's summary without its timings."""
    return {k: v for k, v in flatten(result.summary).items() if not k.startswith("seconds.")}


def assert_shared_items_equal(runs: dict[tuple[int, int | None], Any]) -> int:
    """Each item scored by several runs has the same output and scores in all of them; returns how many items."""
    seen: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
    for run, result in runs.items():
        for identity, row in items_by_identity(result.items).items():
            if identity in seen:
                first, expected = seen[identity]
                assert row == expected, f"{identity[0]} item differs between runs {first} and {run}: {identity[1][-80:]!r}"
            else:
                seen[identity] = (run, row)
    return len(seen)


def test_every_output_and_score_is_the_same_at_any_batch_size_and_limit(tiny_lm):
    data = RwkuData.open(["demo"])
    target = data.select("1")[0]
    runs = {(size, limit): evaluate(tiny_lm, load_target(data, target, SETS, limit), size)
            for limit, size in itertools.product(LIMITS, BATCH_SIZES)}
    assert assert_shared_items_equal(runs) > 50
    for limit in LIMITS:  # and so every mean
        assert all(means(runs[(size, limit)]) == means(runs[(1, limit)]) for size in BATCH_SIZES), f"limit {limit}"


@pytest.mark.integration
def test_default_model_gives_the_same_outputs_and_scores_at_any_batch_size_on_demo_target_1():
    """The default model on demo target 1 (forget, neighbour, MIA) at three batch sizes and two limits."""
    import torch

    from rwku.models.loading import load_model

    torch.set_num_threads(1)
    lm = load_model("smollm2-135m", device="cpu")
    data = RwkuData.open(["demo"])
    target = data.select("1")[0]
    sets = ("forget", "neighbor", "mia")
    runs = {(size, limit): evaluate(lm, load_target(data, target, sets, limit), size, sets)
            for size, limit in ((1, 3), (32, 3), (128, 2))}
    assert assert_shared_items_equal(runs) >= 15
    assert means(runs[(1, 3)]) == means(runs[(32, 3)])
