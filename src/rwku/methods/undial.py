"""UNDIAL (Dong et al., NAACL 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
Language Models"): distil the original model into itself, with the logit of each forget text's actual next token
lowered by γ.

Loss: L = (1/N) Σ_t CE(softmax(z_t − γ·e_{x_t}), softmax(s_t)) = −(1/N) Σ_t Σ_v q_t(v) log softmax(s_t)(v), where
z_t are the frozen original model's logits at position t (with LoRA: the adapter switched off; with full tuning: a
frozen copy), e_{x_t} the one-hot of the token that follows, q_t = softmax(z_t − γ·e_{x_t}) the adjusted teacher,
s_t the trained model's logits, over the N counted tokens of the forget texts. The target is fixed, so the loss is
bounded below (by q's entropy) and training cannot run away as gradient ascent does. Follows the reference
implementation in open-unlearning (``compute_undial_loss``), averaged over counted tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rwku.methods.base import Session
from rwku.methods.config import beyond_presets, source, sourced
from rwku.methods.ga import GradientAscent
from rwku.methods.training import counted_tokens

UNDIAL_LORA = "UNDIAL paper (Llama-2-7B, LoRA r 8 α 16): lr 1e-4, effective batch 16, 10 epochs, γ 10 (of 3, 10, 30)"


def undial_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                gamma: float) -> torch.Tensor:
    """Cross-entropy of the student against the teacher with the label's logit lowered by γ; logits [B, T, V],
    labels and mask [B, T]; mean over the counted positions."""
    lowered = torch.full((*labels.shape, 1), -gamma, dtype=teacher_logits.dtype, device=teacher_logits.device)
    target = torch.softmax(teacher_logits.scatter_add(-1, labels[..., None], lowered), dim=-1)
    per_token = -(target * torch.log_softmax(student_logits, dim=-1)).sum(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


@dataclass(frozen=True)
class UndialParams:
    gamma: float = source("UNDIAL paper (strength 10 of 3, 10, 30)", 10.0)


class SelfDistillation(GradientAscent):
    name: ClassVar[str] = "undial"
    description: ClassVar[str] = "UNDIAL: self-distillation towards the original logits with the actual token's lowered by γ"
    paper: ClassVar[str] = "Dong et al. 2025 (UNDIAL)"
    needs_original: ClassVar[bool] = True
    params_type = UndialParams
    presets = beyond_presets({"lora": sourced(UNDIAL_LORA, 1e-4, 16, 10)})

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        student = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
        teacher = reference.logits(batch)[:, :-1]
        return undial_loss(student, teacher, batch.input_ids[:, 1:], counted_tokens(batch), session.params.gamma)
