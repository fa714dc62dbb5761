"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning"):
NPO without a reference model, on the length-normalised log-likelihood, with a margin γ.

Loss: L = −(2/β) · mean_i log σ(−(β/|y_i|) · log π_θ(y_i) − γ), with log π_θ(y_i) summed over the counted tokens of
forget text y_i and |y_i| their number. Minimising it lowers the mean token log-likelihood of the forget texts; as
in NPO the sigmoid saturates once a text is unlikely, and dividing by |y| stops long texts from dominating (the
paper's point against NPO's reference-model bias). The paper adds λ · NLL on a retain set; like NPO in the RWKU
paper, rwku's SimNPO trains on the forget corpus alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from rwku.methods.base import Session
from rwku.methods.config import beyond_presets, source, sourced
from rwku.methods.ga import GradientAscent
from rwku.methods.training import token_logprobs

SIMNPO_TOFU = "SimNPO paper's TOFU model (Llama-2-7B-chat, forget05): lr 1e-5, β 2.5, γ 0; batch 16, 3 epochs as NPO in RWKU"


def simnpo_loss(sequence_logprob: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO loss from each text's summed log-probability and its number of counted tokens."""
    return -(2.0 / beta) * F.logsigmoid(-(beta / lengths.clamp(min=1)) * sequence_logprob - gamma).mean()


@dataclass(frozen=True)
class SimNpoParams:
    beta: float = source("SimNPO paper, TOFU (β = 2.5)", 2.5)
    gamma: float = source("SimNPO paper, TOFU (γ = 0)", 0.0)


class SimNegativePreference(GradientAscent):
    name: ClassVar[str] = "simnpo"
    description: ClassVar[str] = "SimNPO: reference-free NPO on the length-normalised log-likelihood, margin γ"
    paper: ClassVar[str] = "Fan et al. 2024 (SimNPO)"
    params_type = SimNpoParams
    presets = beyond_presets({"full": sourced(SIMNPO_TOFU, 1e-5, 16, 3)})

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        logprobs, mask = token_logprobs(model, batch)
        return simnpo_loss((logprobs * mask).sum(-1), mask.sum(-1), session.params.beta, session.params.gamma)
