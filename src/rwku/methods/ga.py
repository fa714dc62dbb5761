"""Gradient ascent (GA) on the model-written forget corpus, and GA* on the target's Wikipedia passages.

Loss (minimised): L = −(1/N) Σ_t −log p_θ(x_t | x_<t) = mean token log-likelihood of the forget text, i.e. the
negated language-modelling loss, so the optimiser *raises* the NLL of the forget text.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from rwku.errors import RwkuError
from rwku.methods.base import Session, TrainedMethod, text_example
from rwku.methods.config import trained_presets
from rwku.methods.training import mean_token_nll


def ga_loss(model: Any, batch: Any) -> torch.Tensor:
    """−NLL: minimising it is gradient ascent on the language-modelling loss."""
    return -mean_token_nll(model, batch)


class GradientAscent(TrainedMethod):
    name: ClassVar[str] = "ga"
    description: ClassVar[str] = "gradient ascent on the synthetic forget corpus"
    paper: ClassVar[str] = "Jang et al. 2023 (GA)"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("forget",)
    presets = trained_presets(full=(6e-8, 8, 3), lora=(1e-5, 8, 3), batch=(3e-8, 8, 2))

    def texts(self, session: Session) -> list[str]:
        return session.corpus.forget

    def examples(self, session: Session) -> list[Any]:
        texts = self.texts(session)
        if not texts:
            raise RwkuError(f"{self.name}: the corpus has no texts for {', '.join(session.corpus.targets)}")
        return [text_example(session.lm.tokenizer, t, session.train.max_length) for t in texts]

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        return ga_loss(model, batch)


class GradientAscentPassage(GradientAscent):
    name: ClassVar[str] = "ga_passage"
    description: ClassVar[str] = "GA*: gradient ascent on the target's Wikipedia passages (passage.json)"
    paper: ClassVar[str] = "Jin et al. 2024 (RWKU)"
    corpus_kinds: ClassVar[tuple[str, ...]] = ()
    presets = trained_presets(full=(1e-6, 4, 4), lora=(2e-5, 4, 6))

    @classmethod
    def trains_on(cls) -> tuple[str, ...]:
        return ("passage",)

    def texts(self, session: Session) -> list[str]:
        """The passages (capped at ``corpus_size`` when the corpus was built, like every other corpus)."""
        return session.corpus.passage
