"""What the methods with a retain term share: forget examples paired with retain examples, and the retain losses.

Each training example is a forget example and the retain text ``i mod R`` beside it (the TOFU/open-unlearning
pairing: an epoch is one pass over the forget examples, the retain corpus is cycled), so the loop, its batch and its
step count stay the forget corpus's. The retain texts are the unit's zero-shot retain corpus
(:mod:`rwku.corpus.retain`): biographies the model wrote of other people, as raw text + EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch

from rwku.corpus.build import RETAIN
from rwku.errors import RwkuError
from rwku.methods.base import Session, TrainedMethod, text_example
from rwku.methods.config import PAPER, RWKU_DEFAULT, Preset, sourced
from rwku.methods.training import Batch, Example, collate


@dataclass
class RetainPair:
    """One training example: what the forget term sees and the retain text beside it."""

    forget: Any
    retain: Example


def retain_examples(session: Session, method: str) -> list[Example]:
    """The unit's retain texts as examples; none is a one-line error saying where they come from."""
    if not session.corpus.retain:
        raise RwkuError(f"{method}: no retain texts for {', '.join(session.corpus.targets)} (the retain corpus is "
                        "generated: use --corpus generated, and a corpus_size of at least 1)")
    return [text_example(session.lm.tokenizer, text, session.train.max_length) for text in session.corpus.retain]


def pair_with_retain(forget: Sequence[Any], retain: Sequence[Example]) -> list[RetainPair]:
    """Forget example ``i`` with retain example ``i mod len(retain)``."""
    return [RetainPair(example, retain[i % len(retain)]) for i, example in enumerate(forget)]


def kl_on_retain(model: Any, batch: Batch, reference: Any) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) of the next-token distributions, summed over the vocabulary and averaged over the counted
    tokens of the retain batch: Σ_v p_ref(v) (log p_ref(v) − log p_θ(v))."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    with torch.no_grad(), reference.original() as original:
        reference_logits = original(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    current, ref = torch.log_softmax(logits, -1), torch.log_softmax(reference_logits, -1)
    per_token = (ref.exp() * (ref - current)).sum(-1)
    mask = (batch.loss_mask[:, 1:] * batch.attention_mask[:, 1:]).float()
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


class RetainedMethod(TrainedMethod):
    """A trained method with a retain term: ``forget_examples`` are paired with the retain corpus and a batch reaches
    ``loss`` as (forget batch, retain batch)."""

    corpus_kinds: ClassVar[tuple[str, ...]] = ("forget", RETAIN)

    def forget_examples(self, session: Session) -> Sequence[Any]:
        """The forget term's examples: those of the method this one extends (next in the method resolution order)."""
        return super().examples(session)

    def examples(self, session: Session) -> list[RetainPair]:
        return pair_with_retain(self.forget_examples(session), retain_examples(session, self.name))

    def collate(self, session: Session) -> Callable[[Sequence[RetainPair]], tuple[Any, Batch]]:
        forget_collate = self.forget_collate(session)
        pad_id, device = int(session.lm.tokenizer.pad_token_id), session.lm.device
        return lambda pairs: (forget_collate([p.forget for p in pairs]), collate([p.retain for p in pairs], pad_id, device))

    def forget_collate(self, session: Session) -> Callable[[Sequence[Any]], Any]:
        return super().collate(session)

    def reference_examples(self, examples: Sequence[RetainPair]) -> list[Example]:
        """Only the forget term compares with the original's log-probabilities (NPO-GD, NPO-KL)."""
        return super().reference_examples([pair.forget for pair in examples])


def rwku_values(lr: float, batch: int, epochs: int, method: str) -> Preset:
    """The RWKU paper's appendix-H values of the method this one extends (its own paper gives none for this mode)."""
    return sourced(f"{RWKU_DEFAULT}: the RWKU paper's {method} values ({PAPER})", lr, batch, epochs)
