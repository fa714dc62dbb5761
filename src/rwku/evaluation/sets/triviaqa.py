"""TriviaQA (the paper's Fac): a short greedy answer after five demonstrations, best token F1 over the aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rwku.data.schema import Part, TriviaItem
from rwku.evaluation.metrics import max_f1, mean_or_none
from rwku.evaluation.protocol import TRIVIAQA_DEMOS, TRIVIAQA_MAX_NEW_TOKENS
from rwku.evaluation.sets.base import Column, EvalSet

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

TRIVIAQA_PART = Part("triviaqa", ("triviaqa",), TriviaItem.from_json)


def evaluate_triviaqa(ctx: "EvalContext", items: Sequence[TriviaItem]) -> tuple[float | None, list[dict[str, Any]]]:
    """Fac: short greedy answer after five demonstrations; best token F1 over the aliases."""
    prompts = [ctx.prompts.render(TRIVIAQA_DEMOS + f"Q: {item.question}\n", item.subject) + "A:" for item in items]
    outputs = ctx.generate("TriviaQA", prompts, TRIVIAQA_MAX_NEW_TOKENS, ctx.official_stop_ids("<|eot_id|>"))
    records = [{"prompt": prompt, "output": output, "reference": list(item.answers), "score": max_f1(output, item.answers)}
               for item, prompt, output in zip(items, prompts, outputs)]
    return mean_or_none([r["score"] for r in records], 100), records


TRIVIAQA = EvalSet(name="triviaqa", parts=(TRIVIAQA_PART,), evaluate=lambda ctx, data: evaluate_triviaqa(ctx, data["triviaqa"]),
                   summary_path="utility.Fac", items_path="utility.triviaqa", group="utility",
                   columns=(Column("Utility", "Fac", "utility.Fac", False),))
