"""Membership inference on FM (texts about the target) and RM (texts about others).

Per text the official code computes the mean token NLL and the LOSS, Zlib, Min-K% and Min-K%++ scores on the
raw text (no chat template, default special tokens). The paper's FM/RM columns are 100 × mean NLL. We add, per
attack, the ROC-AUC of telling FM from RM; after successful unlearning FM looks *less* like training data.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rwku.data.schema import MiaText
from rwku.evaluation.context import EvalContext
from rwku.evaluation.metrics import mia_attack_scores, roc_auc


def score_texts(ctx: EvalContext, texts: Sequence[MiaText], label: str) -> list[dict[str, Any]]:
    """Per-text NLL and attack scores (the preamble, if any, is prepended to the raw text, as officially)."""
    raw = [ctx.prompts.raw_text(t.text, t.subject) for t in texts]
    encoded = [ctx.prompts.encode(r) for r in raw]
    scores = ctx.score(f"MIA {label}", encoded, [len(e) - 1 for e in encoded], vocab_moments=True)
    items = []
    for text, token_scores in zip(raw, scores):
        attacks = mia_attack_scores(text, token_scores.logprobs, token_scores.mean or [], token_scores.std or [])
        items.append({"set": label, "text": text, "n_tokens": len(token_scores.logprobs), "nll": -attacks["loss"], "attacks": attacks})
    return items


def nan_mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else None


def evaluate_mia(ctx: EvalContext, forget: Sequence[MiaText], retain: Sequence[MiaText]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fm, rm = score_texts(ctx, forget, "FM"), score_texts(ctx, retain, "RM")
    summary: dict[str, Any] = {
        "FM": nan_mean([100 * i["nll"] for i in fm]),
        "RM": nan_mean([100 * i["nll"] for i in rm]),
        "attacks": {},
    }
    for attack in (fm or rm)[0]["attacks"] if (fm or rm) else ():
        fm_scores = [i["attacks"][attack] for i in fm]
        rm_scores = [i["attacks"][attack] for i in rm]
        auc = roc_auc(fm_scores, rm_scores)
        summary["attacks"][attack] = {
            "FM": nan_mean(fm_scores),
            "RM": nan_mean(rm_scores),
            "auc": None if np.isnan(auc) else auc,
        }
    return summary, fm + rm
