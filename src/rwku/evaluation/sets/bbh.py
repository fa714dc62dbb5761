"""BIG-Bench Hard (the paper's Rea): three-shot chain of thought, the answer after "the answer is", exact match."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rwku.data.schema import BbhItem, Part
from rwku.evaluation.metrics import bbh_exact_match, extract_bbh_answer, mean_or_none
from rwku.evaluation.protocol import BBH_INSTRUCTION, BBH_MAX_NEW_TOKENS
from rwku.evaluation.sets.base import Column, EvalSet
from rwku.models.prompting import after_colon_prefill

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

BBH_PART = Part("bbh", ("retain_bbh",), BbhItem.from_json)


def bbh_prompt(ctx: "EvalContext", item: BbhItem) -> str:
    text = item.cot.strip() + BBH_INSTRUCTION + item.question
    return after_colon_prefill(ctx.prompts.render(text, item.subject), "A:")


def evaluate_bbh(ctx: "EvalContext", items: Sequence[BbhItem]) -> tuple[float | None, list[dict[str, Any]]]:
    """Rea: chain-of-thought answer, text after "the answer is", exact match (faithfully per character)."""
    prompts = [bbh_prompt(ctx, item) for item in items]
    outputs = ctx.generate("BBH", prompts, BBH_MAX_NEW_TOKENS, ctx.official_stop_ids())
    whole = ctx.protocol.has("bbh-whole-answer")
    records = []
    for item, prompt, output in zip(items, prompts, outputs):
        prediction = extract_bbh_answer(output)
        records.append({"task": item.task, "prompt": prompt, "raw_output": output, "output": prediction,
                        "reference": item.answer, "score": bbh_exact_match(prediction, item.answer, whole)})
    return mean_or_none([r["score"] for r in records], 100), records


BBH = EvalSet(name="bbh", parts=(BBH_PART,), evaluate=lambda ctx, data: evaluate_bbh(ctx, data["bbh"]),
              summary_path="utility.Rea", items_path="utility.bbh", group="utility",
              columns=(Column("Utility", "Rea", "utility.Rea", False),))
