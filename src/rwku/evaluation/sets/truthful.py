"""TruthfulQA MC1 (the paper's Tru): the true choice must out-score every false one in summed log-probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rwku.data.schema import Part, TruthfulItem
from rwku.evaluation.metrics import mean_or_none
from rwku.evaluation.protocol import TRUTHFUL_QA_PRIMER
from rwku.evaluation.sets.base import Column, EvalSet
from rwku.models.prompting import after_colon_prefill

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

TRUTHFUL_PART = Part("truthful", ("truthful",), TruthfulItem.from_json)


def truthful_prompt(ctx: "EvalContext", item: TruthfulItem) -> str:
    text = TRUTHFUL_QA_PRIMER + "\n\nQ: " + item.question
    return after_colon_prefill(ctx.prompts.render(text, item.subject), "A:")


def evaluate_truthful(ctx: "EvalContext", items: Sequence[TruthfulItem]) -> tuple[float | None, list[dict[str, Any]]]:
    """Tru (MC1): summed log-prob of each choice after the prompt; 1 if the true one beats every false one.

    As officially, prompt and prompt+" "+choice are tokenised separately and the choice's tokens are those
    past the prompt's length.
    """
    prompts = [truthful_prompt(ctx, item) for item in items]
    sequences, spans, owners = [], [], []
    for n, (item, prompt) in enumerate(zip(items, prompts)):
        prompt_len = len(ctx.prompts.encode(prompt))
        joiner = "" if prompt[-1] in ("\n", " ") else " "
        for choice in item.mc1_choices:
            full = ctx.prompts.encode(prompt + joiner + choice)
            sequences.append(full)
            spans.append(max(len(full) - prompt_len, 0))
            owners.append(n)
    scores = ctx.score("TruthfulQA", sequences, spans)
    per_item: list[list[float]] = [[] for _ in items]
    for owner, token_scores in zip(owners, scores):
        per_item[owner].append(float(sum(token_scores.logprobs)))
    records = []
    for item, prompt, choice_scores in zip(items, prompts, per_item):
        true_scores = [s for s, label in zip(choice_scores, item.mc1_labels) if label == 1]
        false_scores = [s for s, label in zip(choice_scores, item.mc1_labels) if label != 1]
        best = item.mc1_choices[int(np.argmax(choice_scores))]
        records.append({"prompt": prompt, "choices": list(item.mc1_choices), "labels": list(item.mc1_labels),
                        "choice_logprobs": choice_scores, "output": best, "reference": item.mc1_choices[item.mc1_labels.index(1)],
                        "score": float(true_scores[0] > max(false_scores))})
    return mean_or_none([r["score"] for r in records], 100), records


TRUTHFUL = EvalSet(name="truthful", parts=(TRUTHFUL_PART,), evaluate=lambda ctx, data: evaluate_truthful(ctx, data["truthful"]),
                   summary_path="utility.Tru", items_path="utility.truthful", group="utility",
                   columns=(Column("Utility", "Tru", "utility.Tru", False),))
