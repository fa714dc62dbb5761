"""Negative preference optimisation (NPO) on the forget corpus.

Loss: L = −(2/β) · mean_i log σ(−β · (log π_θ(y_i) − log π_ref(y_i))), with sequence-summed log-probabilities
and π_ref the original model (with LoRA: the same model with the adapter switched off). β = 0.2 in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from rwku.methods.base import Session
from rwku.methods.config import PAPER_TEXT, source, trained_presets
from rwku.methods.ga import GradientAscent
from rwku.methods.training import sequence_logprob


def npo_loss(policy_logprob: torch.Tensor, reference_logprob: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO loss from sequence log-probabilities of the policy and the reference."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (policy_logprob - reference_logprob)).mean()


@dataclass(frozen=True)
class NpoParams:
    beta: float = source(PAPER_TEXT + " (β = 0.2)", 0.2)


class NegativePreference(GradientAscent):
    name: ClassVar[str] = "npo"
    description: ClassVar[str] = "negative preference optimisation on the synthetic forget corpus"
    paper: ClassVar[str] = "Zhang et al. 2024 (NPO)"
    needs_reference: ClassVar[bool] = True
    params_type = NpoParams
    presets = trained_presets(full=(2e-6, 16, 3), lora=(5e-5, 16, 3), batch=(1e-6, 16, 2))

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        return npo_loss(sequence_logprob(model, batch), reference.sequence_logprob(batch), session.params.beta)
