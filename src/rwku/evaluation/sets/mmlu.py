"""MMLU (the paper's Gen): five-shot multiple choice, the letter with the highest next-token probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rwku.data.schema import MmluItem, Part
from rwku.evaluation.metrics import mean_or_none
from rwku.evaluation.protocol import MMLU_HEADER, MMLU_INSTRUCTION, MMLU_LETTERS
from rwku.evaluation.sets.base import Column, EvalSet

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

MMLU_PART = Part("mmlu", ("retain_mmlu",), MmluItem.from_json)


def mmlu_question(question: str, choices: Sequence[str], answer: int | None = None) -> str:
    """One MMLU question block; with ``answer`` it is a demonstration ending in "Answer: X" and a blank line."""
    text = "Question: " + question
    for letter, choice in zip(MMLU_LETTERS, choices):
        text += f"\n{letter}. {choice}"
    if answer is not None:
        text += f"\nAnswer: {MMLU_LETTERS[answer]}\n\n"
    return text


def mmlu_prompt(ctx: "EvalContext", item: MmluItem) -> str:
    demos = "".join(mmlu_question(e["question"], e["choices"], int(e["answer"])) for e in item.examples)
    text = MMLU_HEADER.format(item.task.replace("_", " ")) + demos + MMLU_INSTRUCTION + mmlu_question(item.question, item.choices)
    return ctx.prompts.render(text, item.subject) + "Answer:"


def evaluate_mmlu(ctx: "EvalContext", items: Sequence[MmluItem]) -> tuple[float | None, list[dict[str, Any]]]:
    """Gen: the letter among " A".." D" with the highest next-token probability; accuracy."""
    tokenizer = ctx.lm.tokenizer
    letter_ids = [tokenizer.encode(" " + letter, add_special_tokens=False)[-1] for letter in MMLU_LETTERS]
    prompts = [mmlu_prompt(ctx, item) for item in items]
    probs = ctx.next_token_probs("MMLU", [ctx.prompts.encode(p) for p in prompts], letter_ids)
    records = []
    for item, prompt, p in zip(items, prompts, probs):
        prediction = int(np.argmax(p))
        records.append({"task": item.task, "prompt": prompt, "letter_probs": p, "output": MMLU_LETTERS[prediction],
                        "reference": MMLU_LETTERS[item.answer], "score": float(prediction == item.answer)})
    return mean_or_none([r["score"] for r in records], 100), records


MMLU = EvalSet(name="mmlu", parts=(MMLU_PART,), evaluate=lambda ctx, data: evaluate_mmlu(ctx, data["mmlu"]),
               summary_path="utility.Gen", items_path="utility.mmlu", group="utility",
               columns=(Column("Utility", "Gen", "utility.Gen", False),))
