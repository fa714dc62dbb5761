"""Fluency (the paper's Flu): a free answer to an AlpacaEval instruction, scored by its n-gram entropy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rwku.data.schema import FluencyItem, Part
from rwku.evaluation.metrics import fluency_entropy, mean_or_none
from rwku.evaluation.protocol import FLUENCY_MAX_NEW_TOKENS, FLUENCY_TEMPLATE
from rwku.evaluation.sets.base import Column, EvalSet

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

FLUENCY_PART = Part("fluency", ("fluency",), FluencyItem.from_json)


def evaluate_fluency(ctx: "EvalContext", items: Sequence[FluencyItem]) -> tuple[float | None, list[dict[str, Any]]]:
    """Flu: free answer to an instruction; (H2 + 2·H3)/3 of its NLTK-word n-grams, mean ×100 (paper: 705.8)."""
    prompts = [ctx.prompts.render(FLUENCY_TEMPLATE.format(item.instruction), item.subject) for item in items]
    outputs = ctx.generate("Fluency", prompts, FLUENCY_MAX_NEW_TOKENS, ctx.official_stop_ids("<|eot_id|>"))
    records = [{"prompt": prompt, "output": output, "score": fluency_entropy(output)} for prompt, output in zip(prompts, outputs)]
    return mean_or_none([r["score"] for r in records], 100), records


FLUENCY = EvalSet(name="fluency", parts=(FLUENCY_PART,), evaluate=lambda ctx, data: evaluate_fluency(ctx, data["fluency"]),
                  summary_path="utility.Flu", items_path="utility.fluency", group="utility",
                  columns=(Column("Utility", "Flu", "utility.Flu", False),))
