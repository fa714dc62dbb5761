"""IdkNLL: rejection tuning (questions about the target answered "I don't know") plus NLL on the retain corpus.

Loss (minimised): L = NLL_refusal + w_r · NLL_retain: RT's loss (:mod:`rwku.methods.rt`, the refusal tokens of a
model-written question in the run's prompt format) plus the mean token NLL of the zero-shot retain corpus.
Source: the "IdkNLL" baseline of open-unlearning (Dorna et al. 2025, "OpenUnlearning"), TOFU's "I don't know"
tuning (Maini et al. 2024) with a retain NLL term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rwku.corpus.build import RETAIN
from rwku.methods.base import Session
from rwku.methods.config import beyond_presets, source
from rwku.methods.retained import RetainedMethod, rwku_values
from rwku.methods.rt import RejectionTuning
from rwku.methods.training import mean_token_nll


@dataclass(frozen=True)
class IdkNllParams:
    retain_weight: float = source("Maini et al. 2024 (TOFU): forget and retain terms summed, weight 1", 1.0)


class IdkNll(RetainedMethod, RejectionTuning):
    name: ClassVar[str] = "idknll"
    description: ClassVar[str] = "RT (refusals to questions about the target) + NLL on the retain corpus"
    paper: ClassVar[str] = "Maini et al. 2024, TOFU"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("questions", RETAIN)
    params_type = IdkNllParams
    presets = beyond_presets({"full": rwku_values(4e-7, 8, 3, "RT"), "lora": rwku_values(3e-5, 8, 3, "RT")})

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        refusals, retain = batch
        return mean_token_nll(model, refusals) + session.params.retain_weight * mean_token_nll(model, retain)
