"""The official code's way of running the model (jinzhuoran/RWKU ``eval_*.py`` + ``inference.py``), for benchmarks.

``model.generate`` on fixed batches in request order (forget/neighbour/TriviaQA 16, BBH/fluency 8), every row of a
batch kept going until all rows stop, then everything from a row's first stop id blanked; MMLU one prompt at a
time on full-length logits; TruthfulQA in batches of 4; MIA one text at a time. The same prompts and metrics as
the default backend, so the scores must agree; only the execution differs. Inputs are moved to ``device``, so it
runs on a GPU as on a CPU. Sampling and RepE's reading pass are the default backend's (the official code has no
batched equivalent to imitate).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from rwku.models.backends.base import OnBatch, under_kernels
from rwku.models.backends.hf import HfBackend
from rwku.models.decoding.prefill import left_pad
from rwku.models.scoring import TokenScores

#: The official generation batch sizes, by request.
OFFICIAL_GENERATION_BATCH = {"forget probes": 16, "neighbor probes": 16, "BBH": 8, "TriviaQA": 16, "Fluency": 8}
OFFICIAL_TRUTHFUL_BATCH = 4


class AllRowsStopped(StoppingCriteria):
    """The official ``KeyWordsCriteria``: the batch stops only once every row ends in a stop id."""

    def __init__(self, stop_ids: Sequence[int]):
        self.stop_ids = set(stop_ids)

    def __call__(self, input_ids, scores, **kwargs):
        done = all(int(row[-1]) in self.stop_ids for row in input_ids)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def cut_at_stop(tokens: Sequence[int], stop_ids: set[int]) -> list[int]:
    """A row's generated tokens before its first stop id (the official code blanks the rest with padding)."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return list(tokens[:position])
    return list(tokens)


class OfficialBackend(HfBackend):
    name = "official"

    def generation_batch(self, task: str) -> int:
        if task not in OFFICIAL_GENERATION_BATCH:
            raise ValueError(f"official backend: no official batch size for {task!r}; known: {', '.join(OFFICIAL_GENERATION_BATCH)}")
        return OFFICIAL_GENERATION_BATCH[task]

    @under_kernels
    @torch.no_grad()
    def generate(self, task: str, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int],
                 on_batch: OnBatch = None) -> list[list[int]]:
        size, stops, outputs = self.generation_batch(task), set(stop_ids), []
        for start in range(0, len(prompts), size):
            ids, mask = left_pad(prompts[start:start + size], self.pad_id, self.device)
            generated = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([AllRowsStopped(stop_ids)]),
            )
            outputs += [cut_at_stop(row, stops) for row in generated[:, ids.shape[1]:].tolist()]
            if on_batch is not None:
                on_batch(ids.shape[0])
        return outputs

    @under_kernels
    def score(self, task: str, sequences: Sequence[Sequence[int]], n_scored: Sequence[int], vocab_moments: bool = False,
              greedy: bool = False, on_batch: OnBatch = None) -> list[TokenScores]:
        """TruthfulQA's choices in batches of 4, left-padded, as ``score_completions``; anything else (MIA texts)
        one text at a time, as ``eval_mia``."""
        size = OFFICIAL_TRUTHFUL_BATCH if task == "TruthfulQA" else 1
        results: list[TokenScores] = []
        for start in range(0, len(sequences), size):
            results += self.score_rows(sequences[start:start + size], n_scored[start:start + size], vocab_moments, greedy)
            if on_batch is not None:
                on_batch(len(sequences[start:start + size]))
        return results

    @torch.no_grad()
    def score_rows(self, rows: Sequence[Sequence[int]], n_scored: Sequence[int], vocab_moments: bool,
                   greedy: bool) -> list[TokenScores]:
        """One padded batch on full-length logits; no position ids (the official helpers pass only ids and mask)."""
        ids, mask = left_pad(rows, self.pad_id, self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        width, out = ids.shape[1], []
        for i, (row, n) in enumerate(zip(rows, n_scored)):
            lp = torch.log_softmax(logits[i, width - n - 1: width - 1], dim=-1)
            targets = torch.tensor(list(row[-n:]) if n else [], dtype=torch.long, device=self.device)
            scores = TokenScores(lp.gather(-1, targets[:, None]).squeeze(-1).tolist())
            if greedy:
                scores.greedy = (lp.argmax(-1) == targets).tolist()
            if vocab_moments:
                p = lp.exp()
                mean = (p * lp).sum(-1)
                scores.mean, scores.std = mean.tolist(), ((p * lp.square()).sum(-1) - mean.square()).sqrt().tolist()
            out.append(scores)
        return out

    @under_kernels
    @torch.no_grad()
    def next_token_probs(self, task: str, prompts: Sequence[Sequence[int]], candidates: Sequence[int],
                         on_batch: OnBatch = None) -> list[list[float]]:
        """``eval_mmlu``: batch size 1, the logits of every position computed."""
        results = []
        for prompt in prompts:
            logits = self.model(input_ids=torch.tensor([list(prompt)], device=self.device)).logits[:, -1, :]
            results.append(torch.softmax(logits.float(), dim=-1)[0, list(candidates)].tolist())
            if on_batch is not None:
                on_batch(1)
        return results
