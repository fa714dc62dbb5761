"""Direct preference optimisation (DPO): prefer the counterfactual biography over the factual one.

Loss (sigmoid DPO): L = −mean log σ(β · [(log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))])
with y_w the counterfactual (chosen) and y_l the factual (rejected) text, x = "{intro} Please write a short
biography of {target}." as a user turn in the run's prompt format, log-probabilities summed over the response
tokens. β = 0.1 in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F

from rwku.errors import RwkuError
from rwku.methods.base import Session, TrainedMethod, chat_example
from rwku.methods.config import PAPER_TEXT, source, trained_presets
from rwku.methods.training import Batch, Example, collate, sequence_logprob


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Sigmoid DPO loss from summed response log-probabilities."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


@dataclass(frozen=True)
class DpoParams:
    beta: float = source(PAPER_TEXT + " (β = 0.1)", 0.1)


@dataclass
class PairExample:
    chosen: Example
    rejected: Example


class DirectPreference(TrainedMethod):
    name: ClassVar[str] = "dpo"
    description: ClassVar[str] = "DPO: counterfactual (chosen) over factual (rejected) biographies"
    paper: ClassVar[str] = "Rafailov et al. 2023 (DPO)"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("forget", "counterfactual")
    needs_reference: ClassVar[bool] = True
    rows_per_example: ClassVar[int] = 2
    params_type = DpoParams
    presets = trained_presets(full=(5e-6, 8, 3), lora=(6e-5, 8, 3), batch=(2e-6, 8, 2))

    def pairs(self, session: Session) -> list[tuple[str, str, str]]:
        """(prompt, chosen, rejected) triples: here counterfactual over factual biography."""
        pairs = session.corpus.pairs()
        if not pairs:
            raise RwkuError(f"dpo: no (counterfactual, factual) pairs for {', '.join(session.corpus.targets)}")
        return pairs

    def examples(self, session: Session) -> list[PairExample]:
        pairs = self.pairs(session)
        fmt, n = session.prompts, session.train.max_length
        return [PairExample(chat_example(fmt, prompt, chosen, n), chat_example(fmt, prompt, rejected, n))
                for prompt, chosen, rejected in pairs]

    def reference_examples(self, examples: Sequence[PairExample]) -> list[Example]:
        return [e for pair in examples for e in (pair.chosen, pair.rejected)]

    def collate(self, session: Session) -> Callable[[Sequence[PairExample]], tuple[Batch, int]]:
        pad_id, device = int(session.lm.tokenizer.pad_token_id), session.lm.device
        # chosen and rejected go through the model together: rows [0, n) chosen, [n, 2n) rejected
        return lambda pairs: (collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id, device), len(pairs))

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        both, n = batch
        policy = sequence_logprob(model, both)
        ref = reference.sequence_logprob(both)
        return dpo_loss(policy[:n], policy[n:], ref[:n], ref[n:], session.params.beta)
