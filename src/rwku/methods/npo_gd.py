"""NPO-GD: negative preference optimisation on the forget corpus plus NLL on the retain corpus.

Loss (minimised): L = NPO(forget) + w_r · NLL_retain, with NPO(forget) = −(2/β) · mean_i log σ(−β · (log π_θ(y_i) −
log π_ref(y_i))) (:func:`rwku.methods.npo.npo_loss`, sequence-summed log-probabilities, π_ref the original model:
with LoRA the adapter switched off) and NLL_retain the mean token NLL of the zero-shot retain corpus.
Source: Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning"
(COLM), the "NPO+RT" objective (retain loss = NLL on retain data, weight 1; β = 0.1 on TOFU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rwku.corpus.build import RETAIN
from rwku.methods.base import Session
from rwku.methods.config import beyond_presets, source
from rwku.methods.npo import NegativePreference, npo_loss
from rwku.methods.retained import RetainedMethod, rwku_values
from rwku.methods.training import mean_token_nll, sequence_logprob

NPO_PAPER = "Zhang et al. 2024 (NPO), TOFU"


@dataclass(frozen=True)
class NpoRetainParams:
    beta: float = source(NPO_PAPER + " (β = 0.1)", 0.1)
    retain_weight: float = source(NPO_PAPER + " (forget and retain terms summed, weight 1)", 1.0)


def npo_forget_term(model: Any, forget: Any, session: Session, reference: Any) -> torch.Tensor:
    """NPO's loss on the forget batch (the one NPO loss, :func:`rwku.methods.npo.npo_loss`)."""
    return npo_loss(sequence_logprob(model, forget), reference.sequence_logprob(forget), session.params.beta)


#: Paper-scale values: the RWKU paper's NPO values (Zhang et al. tuned on TOFU's fine-tuned Llama-2-7B, another regime).
NPO_PRESETS = beyond_presets({"full": rwku_values(2e-6, 16, 3, "NPO"), "lora": rwku_values(5e-5, 16, 3, "NPO")})


class NpoGradDiff(RetainedMethod, NegativePreference):
    name: ClassVar[str] = "npo_gd"
    description: ClassVar[str] = "NPO on the forget corpus + NLL on the retain corpus"
    paper: ClassVar[str] = "Zhang et al. 2024, NPO"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("forget", RETAIN)
    params_type = NpoRetainParams
    presets = NPO_PRESETS

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        forget, retain = batch
        return npo_forget_term(model, forget, session, reference) + session.params.retain_weight * mean_token_nll(model, retain)
