"""Utility sets: MMLU (Gen), BBH (Rea), TruthfulQA MC1 (Tru), TriviaQA (Fac), fluency (Flu).

Each evaluator builds the official prompts, runs the model in batches and returns (score, items), the score
on the paper's scale (×100).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rwku.data.schema import BbhItem, FluencyItem, MmluItem, TriviaItem, TruthfulItem
from rwku.evaluation.context import EvalContext
from rwku.evaluation.metrics import bbh_exact_match, extract_bbh_answer, fluency_entropy, max_f1
from rwku.evaluation.protocol import (
    BBH_INSTRUCTION,
    BBH_MAX_NEW_TOKENS,
    FLUENCY_MAX_NEW_TOKENS,
    FLUENCY_TEMPLATE,
    MMLU_HEADER,
    MMLU_INSTRUCTION,
    MMLU_LETTERS,
    TRIVIAQA_DEMOS,
    TRIVIAQA_MAX_NEW_TOKENS,
    TRUTHFUL_QA_PRIMER,
)
from rwku.models.prompting import after_colon_prefill

Result = tuple[float | None, list[dict[str, Any]]]


def scaled_mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values) * 100) if len(values) else None


def mmlu_question(question: str, choices: Sequence[str], answer: int | None = None) -> str:
    """One MMLU question block; with ``answer`` it is a demonstration ending in "Answer: X" and a blank line."""
    text = "Question: " + question
    for letter, choice in zip(MMLU_LETTERS, choices):
        text += f"\n{letter}. {choice}"
    if answer is not None:
        text += f"\nAnswer: {MMLU_LETTERS[answer]}\n\n"
    return text


def mmlu_prompt(ctx: EvalContext, item: MmluItem) -> str:
    demos = "".join(mmlu_question(e["question"], e["choices"], int(e["answer"])) for e in item.examples)
    text = MMLU_HEADER.format(item.task.replace("_", " ")) + demos + MMLU_INSTRUCTION + mmlu_question(item.question, item.choices)
    return ctx.prompts.render(text, item.subject) + "Answer:"


def evaluate_mmlu(ctx: EvalContext, items: Sequence[MmluItem]) -> Result:
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
    return scaled_mean([r["score"] for r in records]), records


def bbh_prompt(ctx: EvalContext, item: BbhItem) -> str:
    text = item.cot.strip() + BBH_INSTRUCTION + item.question
    return after_colon_prefill(ctx.prompts.render(text, item.subject), "A:")


def evaluate_bbh(ctx: EvalContext, items: Sequence[BbhItem]) -> Result:
    """Rea: chain-of-thought answer, text after "the answer is", exact match (faithfully per character)."""
    prompts = [bbh_prompt(ctx, item) for item in items]
    outputs = ctx.generate("BBH", prompts, BBH_MAX_NEW_TOKENS, ctx.official_stop_ids())
    whole = ctx.protocol.has("bbh-whole-answer")
    records = []
    for item, prompt, output in zip(items, prompts, outputs):
        prediction = extract_bbh_answer(output)
        records.append({"task": item.task, "prompt": prompt, "raw_output": output, "output": prediction,
                        "reference": item.answer, "score": bbh_exact_match(prediction, item.answer, whole)})
    return scaled_mean([r["score"] for r in records]), records


def truthful_prompt(ctx: EvalContext, item: TruthfulItem) -> str:
    text = TRUTHFUL_QA_PRIMER + "\n\nQ: " + item.question
    return after_colon_prefill(ctx.prompts.render(text, item.subject), "A:")


def evaluate_truthful(ctx: EvalContext, items: Sequence[TruthfulItem]) -> Result:
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
    return scaled_mean([r["score"] for r in records]), records


def evaluate_triviaqa(ctx: EvalContext, items: Sequence[TriviaItem]) -> Result:
    """Fac: short greedy answer after five demonstrations; best token F1 over the aliases."""
    prompts = [ctx.prompts.render(TRIVIAQA_DEMOS + f"Q: {item.question}\n", item.subject) + "A:" for item in items]
    outputs = ctx.generate("TriviaQA", prompts, TRIVIAQA_MAX_NEW_TOKENS, ctx.official_stop_ids("<|eot_id|>"))
    records = [{"prompt": prompt, "output": output, "reference": list(item.answers), "score": max_f1(output, item.answers)}
               for item, prompt, output in zip(items, prompts, outputs)]
    return scaled_mean([r["score"] for r in records]), records


def evaluate_fluency(ctx: EvalContext, items: Sequence[FluencyItem]) -> Result:
    """Flu: free answer to an instruction; (H2 + 2·H3)/3 of its NLTK-word n-grams, mean ×100 (paper: 705.8)."""
    prompts = [ctx.prompts.render(FLUENCY_TEMPLATE.format(item.instruction), item.subject) for item in items]
    outputs = ctx.generate("Fluency", prompts, FLUENCY_MAX_NEW_TOKENS, ctx.official_stop_ids("<|eot_id|>"))
    records = [{"prompt": prompt, "output": output, "score": fluency_entropy(output)} for prompt, output in zip(prompts, outputs)]
    return scaled_mean([r["score"] for r in records]), records


def evaluate_utility(ctx: EvalContext, data: Any) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """All five utility scores of a target's subsets, keyed as the paper's columns."""
    summary: dict[str, Any] = {}
    items: dict[str, list[dict[str, Any]]] = {}
    for column, name, evaluator, records in (
        ("Gen", "mmlu", evaluate_mmlu, data.mmlu),
        ("Rea", "bbh", evaluate_bbh, data.bbh),
        ("Tru", "truthful", evaluate_truthful, data.truthful),
        ("Fac", "triviaqa", evaluate_triviaqa, data.triviaqa),
        ("Flu", "fluency", evaluate_fluency, data.fluency),
    ):
        summary[column], items[name] = evaluator(ctx, records)
    return summary, items
