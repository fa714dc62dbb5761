"""Batched log-likelihood scoring: per-token log-probs, full-vocabulary moments, next-token distributions.

The official code scores MMLU and MIA texts one at a time. Here sequences are batched by shared prefix (computed
once, see :mod:`rwku.models.decoding.prefill`), and only the logits that are needed are computed (``logits_to_keep``):
the last position for MMLU, the answer span for TruthfulQA, every position for MIA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from rwku.models.decoding.prefill import RowPrefiller, prefix_sorted_batches, run_prefill


@dataclass
class TokenScores:
    """Scores of the last ``n`` tokens of a sequence under the model.

    ``logprobs[t]`` is log p(token t | tokens before it); ``mean`` and ``std`` are the mean and standard
    deviation of log p over the whole vocabulary under the model's own next-token distribution at that
    position (E_p[log p] and sqrt(Var_p[log p])), which Min-K%++ needs. ``greedy[t]`` says whether token t is the
    model's greedy (argmax) prediction at its position, which exact memorization counts.
    """

    logprobs: list[float]
    mean: list[float] | None = None
    std: list[float] | None = None
    greedy: list[bool] | None = None


def score_tokens(
    model: Any,
    sequences: Sequence[Sequence[int]],
    n_scored: Sequence[int],
    *,
    pad_id: int,
    batch_size: int,
    vocab_moments: bool = False,
    greedy: bool = False,
    on_batch: Callable[[int], None] | None = None,
    prefiller: RowPrefiller | None = None,
) -> list[TokenScores]:
    """Log-probs of the last ``n_scored[i]`` tokens of ``sequences[i]`` (each at most ``len - 1``); with ``greedy``
    also whether each of them is the argmax of the model's next-token distribution at its position. With a
    ``prefiller`` rows run one at a time through it (``batch_size`` 1)."""
    results: list[TokenScores | None] = [None] * len(sequences)
    for batch in prefix_sorted_batches(sequences, batch_size):
        keep = max(n_scored[i] for i in batch) + 1
        logits = run_prefill(model, [sequences[i] for i in batch], pad_id=pad_id, keep=keep,
                             needed_from_end=[n_scored[i] for i in batch], prefiller=prefiller).logits
        for row, i in enumerate(batch):
            n = n_scored[i]
            if n <= 0:
                results[i] = TokenScores([], [] if vocab_moments else None, [] if vocab_moments else None,
                                         [] if greedy else None)
                continue
            # positions keep-1-n .. keep-2 predict the last n tokens
            lp = torch.log_softmax(logits[row, keep - 1 - n: keep - 1], dim=-1)  # per row: no padding, less memory
            targets = torch.tensor(sequences[i][-n:], device=lp.device)
            chosen = lp.gather(-1, targets[:, None]).squeeze(-1)
            scores = TokenScores(logprobs=chosen.tolist())
            if greedy:
                scores.greedy = (lp.argmax(-1) == targets).tolist()
            if vocab_moments:
                probs = lp.exp()
                mean = (probs * lp).sum(-1)
                var = (probs * lp.square()).sum(-1) - mean.square()
                scores.mean, scores.std = mean.tolist(), var.sqrt().tolist()
            results[i] = scores
        if on_batch is not None:
            on_batch(len(batch))
    return results  # type: ignore[return-value]


def next_token_probs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    candidates: Sequence[int],
    *,
    pad_id: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
    prefiller: RowPrefiller | None = None,
) -> list[list[float]]:
    """Next-token probabilities (softmax over the full vocabulary) of ``candidates`` after each prompt; with a
    ``prefiller`` one prompt at a time through it (``batch_size`` 1)."""
    results: list[list[float]] = [[] for _ in prompts]
    index = torch.tensor(list(candidates))
    for batch in prefix_sorted_batches(prompts, batch_size):
        rows = [prompts[i] for i in batch]
        logits = run_prefill(model, rows, pad_id=pad_id, keep=1, needed_from_end=[0] * len(rows),
                             prefiller=prefiller).logits[:, -1, :]
        probs = torch.softmax(logits, dim=-1)[:, index.to(logits.device)]
        for row, i in enumerate(batch):
            results[i] = probs[row].tolist()
        if on_batch is not None:
            on_batch(len(batch))
    return results
