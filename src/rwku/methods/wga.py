"""Weighted gradient ascent (WGA; Wang et al., ICLR 2025, "Rethinking LLM Unlearning Objectives: A Gradient
Perspective and Go Beyond"): gradient ascent with each token weighted by its own (detached) probability.

Loss (minimised): L = (1/N) Σ_t sg(p_t)^β · log p_t over the N counted tokens of the forget texts, with
p_t = π_θ(x_t | x_<t) and sg the stop-gradient, so ∇L = (1/N) Σ_t p_t^β ∇log p_t: GA's gradient with the tokens the
model no longer predicts weighted down, which keeps GA from pushing already-forgotten tokens ever further (the
paper's "excessive unlearning"). β = 0 is GA (the mean token log-likelihood, :func:`rwku.methods.ga.ga_loss`).
The sign and normalisation follow the reference implementation in open-unlearning (``compute_wga_loss``: the mean
over counted tokens of −w_t · CE_t, w_t = exp(−CE_t)^β detached). The paper adds a retain term; rwku's WGA, like GA
in the RWKU paper, trains on the forget corpus alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rwku.methods.base import Session
from rwku.methods.config import beyond_presets, source, sourced
from rwku.methods.ga import GradientAscent
from rwku.methods.training import token_logprobs

WGA_TOFU = "WGA as run on TOFU (7B-scale) in open-unlearning's WGA config: lr 1e-5, batch 32, 5 epochs, β 1"


def wga_loss(logprobs: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean over counted tokens of sg(p)^β · log p, from token log-probabilities and their 0/1 mask."""
    weights = logprobs.detach().exp() ** beta
    return (weights * logprobs * mask).sum() / mask.sum().clamp(min=1)


@dataclass(frozen=True)
class WgaParams:
    beta: float = source("WGA paper / open-unlearning WGA config (β = 1)", 1.0)


class WeightedGradientAscent(GradientAscent):
    name: ClassVar[str] = "wga"
    description: ClassVar[str] = "weighted gradient ascent: each forget token weighted by its detached probability^β"
    paper: ClassVar[str] = "Wang et al. 2025 (WGA)"
    params_type = WgaParams
    presets = beyond_presets({"full": sourced(WGA_TOFU, 1e-5, 32, 5)})

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        return wga_loss(*token_logprobs(model, batch), session.params.beta)
