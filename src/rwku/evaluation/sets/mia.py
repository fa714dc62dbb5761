"""Membership inference on FM (texts about the target) and RM (texts about others).

Per text the official code computes the mean token NLL and the LOSS, Zlib, Min-K% and Min-K%++ scores on the
raw text (no chat template, default special tokens). The paper's FM/RM columns are 100 × mean NLL. We add, per
attack, the ROC-AUC of telling FM from RM; after successful unlearning FM looks *less* like training data.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from rwku.data.schema import MiaText, Part
from rwku.evaluation.metrics import mean_or_none, mia_attack_scores, roc_auc
from rwku.evaluation.sets.base import Column, EvalSet

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

FORGET_MIA = Part("forget_mia", ("forget_mia",), MiaText.from_json)
RETAIN_MIA = Part("retain_mia", ("retain_mia",), MiaText.from_json)


def score_texts(ctx: "EvalContext", texts: Sequence[MiaText], label: str) -> list[dict[str, Any]]:
    """Per-text NLL and attack scores (the preamble, if any, is prepended to the raw text, as officially)."""
    raw = [ctx.prompts.raw_text(t.text, t.subject) for t in texts]
    encoded = [ctx.prompts.encode(r) for r in raw]
    scores = ctx.score(f"MIA {label}", encoded, [len(e) - 1 for e in encoded], vocab_moments=True)
    items = []
    for text, token_scores in zip(raw, scores):
        attacks = mia_attack_scores(text, token_scores.logprobs, token_scores.mean, token_scores.std)
        items.append({"set": label, "text": text, "n_tokens": len(token_scores.logprobs), "nll": -attacks["loss"], "attacks": attacks})
    return items


def evaluate_mia(ctx: "EvalContext", forget: Sequence[MiaText], retain: Sequence[MiaText]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fm, rm = score_texts(ctx, forget, "FM"), score_texts(ctx, retain, "RM")
    summary: dict[str, Any] = {
        "FM": mean_or_none([100 * i["nll"] for i in fm]),
        "RM": mean_or_none([100 * i["nll"] for i in rm]),
        "attacks": {},
    }
    for attack in (fm or rm)[0]["attacks"] if (fm or rm) else ():
        fm_scores = [i["attacks"][attack] for i in fm]
        rm_scores = [i["attacks"][attack] for i in rm]
        auc = roc_auc(fm_scores, rm_scores)
        summary["attacks"][attack] = {
            "FM": mean_or_none(fm_scores),
            "RM": mean_or_none(rm_scores),
            "auc": None if math.isnan(auc) else auc,
        }
    if (fm or rm) and not any(name.startswith("mink++") for name in summary["attacks"]):
        summary["attacks_missing"] = {"mink++": "the backend returned no vocabulary moments (a served model whose server "
                                                "does not report them; rwku serve does)"}
    return summary, fm + rm


MIA = EvalSet(
    name="mia", parts=(FORGET_MIA, RETAIN_MIA), summary_path="mia", items_path="mia",
    evaluate=lambda ctx, data: evaluate_mia(ctx, data["forget_mia"], data["retain_mia"]),
    columns=(Column("MIA", "FM", "mia.FM", False), Column("MIA", "RM", "mia.RM", True)),
)
