"""Verbatim memorization (MUSE's VerbMem, Shi et al. 2024): does the model still reproduce a target's text?

For each of the target's passages (``passage.json``, the Wikipedia text its probes were written from) of at least
:data:`MIN_WORDS` words, the first :data:`PROMPT_TOKENS` tokens are the prompt (raw text, the tokenizer's default
special tokens, ICU's preamble before it as MIA has it); the model continues greedily for as many tokens as the
true continuation has, the next :data:`NEW_TOKENS` tokens of the passage (fewer where the passage ends first; it
stops at end of text). The score is ROUGE-L of the continuation against the true continuation, computed as
``rouge_score``'s ``rougeL`` (:func:`rwku.evaluation.metrics.rouge_l`): MUSE reports its F1, ×100; recall is
kept beside it. Lower is better on a target to forget.

``--limit N`` keeps the first N passages that are long enough. The set is opt-in: ``--sets all`` and the
default leave it out (existing results keep their keys); name it, e.g. ``--sets all,verbmem``. Its three
numbers join the unit key (:attr:`EvalSet.key`) and every item records its prompt and true continuation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rwku.data.schema import Part, parse_passage
from rwku.evaluation.metrics import mean_or_none, rouge_l
from rwku.evaluation.sets.base import Column, EvalSet

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

#: k: prompt length in tokens (rwku's choice: long enough to name the passage's subject, short of most passages).
PROMPT_TOKENS = 32
#: m: tokens of the true continuation, and the most the model generates (MUSE's ``verbmem_max_new_tokens``).
NEW_TOKENS = 128
#: Passages shorter than this (in words) are left out: section headings and one-line stubs have no continuation.
MIN_WORDS = 100


def long_enough(passages: Sequence[str]) -> list[str]:
    """The passages VerbMem reads: those of at least :data:`MIN_WORDS` whitespace words, in file order."""
    return [p for p in passages if len(p.split()) >= MIN_WORDS]


VERBMEM_PART = Part("verbmem", ("passage",), parse_passage, limit=lambda records, n: long_enough(records)[:n],
                    count=lambda name, records: {name: len(long_enough(records))})


def split_passage(tokenizer: Any, passage: str, prompt_tokens: int = PROMPT_TOKENS, new_tokens: int = NEW_TOKENS,
                  preamble: str = "") -> tuple[list[int], list[int]]:
    """(prompt ids, true continuation ids): the passage's first ``prompt_tokens`` tokens (after ``preamble``'s,
    if any) with the tokenizer's default special tokens, and its next ``new_tokens`` tokens."""
    ids = list(tokenizer(passage, add_special_tokens=False)["input_ids"])
    before = list(tokenizer(preamble, add_special_tokens=False)["input_ids"]) if preamble else []
    return special_prefix(tokenizer) + before + ids[:prompt_tokens], ids[prompt_tokens:prompt_tokens + new_tokens]


def special_prefix(tokenizer: Any) -> list[int]:
    """What the tokenizer's default special tokens put before a text (a BOS, or nothing for SmolLM2)."""
    return list(tokenizer("", add_special_tokens=True)["input_ids"])


def continuation_items(ctx: "EvalContext", passages: Sequence[str], subject: str = "", description: str = "VerbMem",
                       prompt_tokens: int = PROMPT_TOKENS, new_tokens: int = NEW_TOKENS) -> list[dict[str, Any]]:
    """Per passage: its index in ``passages``, prompt, true and generated continuation and their ROUGE-L (passages
    too short to leave a continuation after the prompt are skipped). ICU's preamble for ``subject`` goes first."""
    tokenizer = ctx.lm.tokenizer
    preamble = ctx.prompts.raw_text("", subject)
    split = [split_passage(tokenizer, p, prompt_tokens, new_tokens, preamble) for p in passages]
    kept = [(index, prompt, truth) for index, (prompt, truth) in enumerate(split) if truth]
    generated = ctx.generate_tokens(description, [prompt for _, prompt, _ in kept], new_tokens, ctx.official_stop_ids())
    items = []
    for (index, prompt, truth), tokens in zip(kept, generated):
        tokens = tokens[:len(truth)]  # as long as the truth: a longer answer would only lose precision
        output = tokenizer.decode(tokens, skip_special_tokens=True)
        reference = tokenizer.decode(truth, skip_special_tokens=True)
        scores = rouge_l(output, reference)
        items.append({"passage": index, "prompt": tokenizer.decode(prompt, skip_special_tokens=True), "reference": reference,
                      "output": output, "new_tokens": len(truth), "rougeL_f1": scores["f1"],
                      "rougeL_recall": scores["recall"]})
    return items


def evaluate_verbmem(ctx: "EvalContext", passages: Sequence[str], subject: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """VerbMem of one target: mean ROUGE-L F1 (MUSE's number) and recall over its long passages, ×100."""
    items = continuation_items(ctx, long_enough(passages), subject)
    summary = {"F1": mean_or_none([i["rougeL_f1"] for i in items], 100),
               "recall": mean_or_none([i["rougeL_recall"] for i in items], 100)}
    return summary, items


VERBMEM = EvalSet(
    name="verbmem", parts=(VERBMEM_PART,), evaluate=lambda ctx, data: evaluate_verbmem(ctx, data["verbmem"], data.target.name),
    summary_path="verbmem", items_path="verbmem", in_all=False,
    key={"prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "min_words": MIN_WORDS, "rouge": "rougeL, rouge_score tokens"},
    columns=(Column("VerbMem", "RL-F1", "verbmem.F1", True),),
)
