"""Rejection tuning (RT): fine-tune on model-written questions about the target answered with refusals.

Loss: mean NLL of the refusal tokens (the question, a user turn in the run's prompt format, is context only).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from rwku.errors import RwkuError
from rwku.methods.base import Session, TrainedMethod, chat_example
from rwku.methods.config import trained_presets
from rwku.methods.training import mean_token_nll


class RejectionTuning(TrainedMethod):
    name: ClassVar[str] = "rt"
    description: ClassVar[str] = "rejection tuning: questions about the target answered with refusals"
    paper: ClassVar[str] = "Ishibashi & Shimodaira 2023 (RT)"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("questions",)
    presets = trained_presets(full=(4e-7, 8, 3), lora=(3e-5, 8, 3), batch=(1e-7, 8, 1))

    def examples(self, session: Session) -> list[Any]:
        pairs = [(q, a) for q, a in zip(session.corpus.questions, session.corpus.refusals) if q.strip()]
        if not pairs:
            raise RwkuError(f"rt: no questions for {', '.join(session.corpus.targets)}")
        return [chat_example(session.prompts, q, a, session.train.max_length) for q, a in pairs]

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        return mean_token_nll(model, batch)
