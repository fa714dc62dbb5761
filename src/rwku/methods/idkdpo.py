"""IdkDPO: DPO with a refusal as the preferred answer (TOFU, Maini et al. 2024, "TOFU: A Task of Fictitious
Unlearning for LLMs"; the "I don't know" preference variant as open-unlearning runs it).

Loss: the sigmoid DPO loss of :mod:`rwku.methods.dpo`, L = −mean log σ(β · [(log π_θ(y_w|x) − log π_ref(y_w|x)) −
(log π_θ(y_l|x) − log π_ref(y_l|x))]), with x a model-written question about the target (a user turn in the run's
prompt format), y_w a refusal (the refusal texts rejection tuning uses) and y_l the model's own answer to x. TOFU
rejects the dataset's answer; the zero-shot setting has none, so the rejected answer is what the model itself
says, sampled like the forget corpus (the ``answers`` corpus kind). β = 0.1 as DPO in the RWKU paper.
"""

from __future__ import annotations

from typing import ClassVar

from rwku.errors import RwkuError
from rwku.methods.base import Session
from rwku.methods.config import beyond_presets, sourced
from rwku.methods.dpo import DirectPreference

TOFU = "TOFU (Maini et al. 2024), Llama-2-7B: lr 1e-5, effective batch 32, 5 epochs"


class IdkPreference(DirectPreference):
    name: ClassVar[str] = "idkdpo"
    description: ClassVar[str] = "IdkDPO: a refusal (chosen) over the model's own answer (rejected) to its questions"
    paper: ClassVar[str] = "Maini et al. 2024 (TOFU, IdkDPO)"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("questions", "answers")
    presets = beyond_presets({"full": sourced(TOFU, 1e-5, 32, 5)})

    def pairs(self, session: Session) -> list[tuple[str, str, str]]:
        """(question, refusal, the model's answer) triples."""
        triples = session.corpus.refusal_pairs()
        if not triples:
            raise RwkuError(f"idkdpo: no (question, model answer) pairs for {', '.join(session.corpus.targets)}; the "
                            "official corpora hold no model answers: use --corpus generated")
        return triples
