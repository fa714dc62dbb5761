"""NPO-KL: negative preference optimisation on the forget corpus plus KL to the original model on the retain corpus.

Loss (minimised): L = NPO(forget) + w_r · KL(π_ref ‖ π_θ) on retain text, the KL of the next-token distributions
summed over the vocabulary and averaged over the retain tokens (:func:`rwku.methods.retained.kl_on_retain`); π_ref is
the original model for both terms: with LoRA the adapter switched off, with full or partial tuning a frozen copy.
Source: Zhang et al. 2024, "Negative Preference Optimization" (COLM), the "NPO+KL" objective.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from rwku.corpus.build import RETAIN
from rwku.methods.base import Session
from rwku.methods.npo import NegativePreference
from rwku.methods.npo_gd import NPO_PRESETS, NpoRetainParams, npo_forget_term
from rwku.methods.retained import RetainedMethod, kl_on_retain


class NpoKl(RetainedMethod, NegativePreference):
    name: ClassVar[str] = "npo_kl"
    description: ClassVar[str] = "NPO on the forget corpus + KL to the original model on the retain corpus"
    paper: ClassVar[str] = "Zhang et al. 2024, NPO"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("forget", RETAIN)
    needs_original: ClassVar[bool] = True  # the KL term runs the original model on retain text
    params_type = NpoRetainParams
    presets = NPO_PRESETS

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        forget, retain = batch
        return npo_forget_term(model, forget, session, reference) + session.params.retain_weight * kl_on_retain(model, retain, reference)
