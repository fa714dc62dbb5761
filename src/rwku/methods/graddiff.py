"""Gradient difference (GradDiff): gradient ascent on the forget corpus, descent on the retain corpus.

Loss (minimised): L = −w_f · NLL_forget + w_r · NLL_retain, each the mean token NLL of its batch (GA's loss on the
forget text plus the language-modelling loss on the zero-shot retain corpus, :mod:`rwku.corpus.retain`).
Source: Liu et al. 2022, "Continual Learning and Private Unlearning" (CoLLAs); the weights 1 and 1 are TOFU's
``grad_diff`` (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rwku.corpus.build import RETAIN
from rwku.methods.base import Session
from rwku.methods.config import beyond_presets, source
from rwku.methods.ga import GradientAscent
from rwku.methods.retained import RetainedMethod, rwku_values
from rwku.methods.training import mean_token_nll

TOFU = "Maini et al. 2024 (TOFU), grad_diff: the two terms summed with weight 1"


def graddiff_loss(forget_nll: torch.Tensor, retain_nll: torch.Tensor, forget_weight: float,
                  retain_weight: float) -> torch.Tensor:
    """−w_f · NLL_forget + w_r · NLL_retain."""
    return -forget_weight * forget_nll + retain_weight * retain_nll


@dataclass(frozen=True)
class GradDiffParams:
    forget_weight: float = source(TOFU, 1.0)
    retain_weight: float = source(TOFU, 1.0)


class GradientDifference(RetainedMethod, GradientAscent):
    name: ClassVar[str] = "graddiff"
    description: ClassVar[str] = "GradDiff: gradient ascent on the forget corpus + NLL on the retain corpus"
    paper: ClassVar[str] = "Liu et al. 2022, GradDiff"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("forget", RETAIN)
    params_type = GradDiffParams
    presets = beyond_presets({"full": rwku_values(6e-8, 8, 3, "GA"), "lora": rwku_values(1e-5, 8, 3, "GA")})

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        forget, retain = batch
        params = session.params
        return graddiff_loss(mean_token_nll(model, forget), mean_token_nll(model, retain), params.forget_weight,
                             params.retain_weight)
