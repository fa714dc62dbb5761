"""How decoding picks each row's next token: the argmax (greedy evaluation) or a draw from the row's own seeded
generator (corpus sampling), so a sampled row never depends on its batch."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

#: ``choose(rows, logits)``: the next token of each row (``rows`` are the prompts' indices, ``logits`` [rows, vocab]).
Choice = Callable[[Sequence[int], torch.Tensor], torch.Tensor]


def argmax_choice(rows: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
    """Greedy decoding: the most likely token."""
    return logits.argmax(dim=-1)


def nucleus_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next-token distribution after temperature and top-p, as transformers' ``TopPLogitsWarper`` cuts it: the
    smallest set of most likely tokens whose mass exceeds ``top_p`` (the most likely token always stays)."""
    scaled = logits.float() / temperature
    sorted_logits, order = torch.sort(scaled, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    removed = cumulative <= (1 - top_p)
    removed[..., -1] = False
    scaled = scaled.scatter(-1, order, sorted_logits.masked_fill(removed, float("-inf")))
    return scaled.softmax(dim=-1)


def nucleus_choice(generators: Sequence[torch.Generator], temperature: float, top_p: float) -> Choice:
    """Sampling where row i draws only from ``generators[i]``: one draw per row and step, whatever the batch."""

    def choose(rows: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        probs = nucleus_probs(logits, temperature, top_p)
        return torch.cat([torch.multinomial(probs[local], 1, generator=generators[row]) for local, row in enumerate(rows)])

    return choose
