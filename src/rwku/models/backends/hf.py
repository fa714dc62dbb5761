"""The default backend: transformers models run by rwku's batching (shared-prefix prefill, rows that leave the
batch when done, only the logits that are needed; see :mod:`rwku.models.decoding`), or, under invariant kernels,
one row per pass with its prompt's shared chunks computed once (:class:`rwku.models.decoding.prefill.RowPrefiller`)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Sequence

import torch

from rwku.errors import RwkuError
from rwku.models.backends.base import Backend, OnBatch, under_kernels
from rwku.models.decoding.choice import nucleus_choice
from rwku.models.decoding.drafting import DRAFT_TOKENS
from rwku.models.decoding.generate import generate_tokens
from rwku.models.decoding.prefill import LineEnds, RowPrefiller
from rwku.models.loading import LoadedModel
from rwku.models.scoring import TokenScores, next_token_probs, score_tokens


class HfBackend(Backend):
    """Under ``fast`` kernels, batches of ``batch_size`` rows with shared prefixes computed once. Under
    ``invariant`` kernels, one row per forward pass, unpadded: every tensor shape, and so every kernel choice and
    every reduction order, depends on that row alone, never on the rows around it; a matmul's result for one row
    changes with the number of rows even in float32 on a CPU (measured: the output projection at 1 and 4 rows),
    so nothing weaker guarantees the same numbers at any ``--batch-size`` and ``--limit``. What does not depend on
    the batch is still shared: a row's prompt runs in chunks that end where its own lines end, and the chunks an
    earlier row of the same request computed for the same tokens are copied (a function of the row alone, so
    still invariant); greedy decoding runs passes of a fixed number of positions from any rows, with attention
    position by position (:func:`rwku.models.decoding.slots.decode_slots`), since at a fixed row count a row's bits
    do not depend on the rows beside it; free positions verify prompt-lookup drafts of up to ``draft`` tokens
    (default :data:`~rwku.models.decoding.drafting.DRAFT_TOKENS`; 0 turns drafting off, which changes the time, not the
    tokens)."""

    name = "hf"

    def __init__(self, lm: LoadedModel, batch_size: int = 16, device: Any = None, draft: int | None = None):
        super().__init__(lm, batch_size=batch_size, device=device)
        if draft and self.kernels != "invariant":
            raise RwkuError(f"prompt-lookup drafting ({draft} tokens) fills invariant decoding's fixed-shape passes: use --kernels invariant")
        self.draft = (DRAFT_TOKENS if self.kernels == "invariant" else 0) if draft is None else draft

    @cached_property
    def line_ends(self) -> LineEnds:
        """The tokenizer's line-end tokens, where a prompt's chunks may end (decoded once per backend)."""
        return LineEnds.of(self.tokenizer)

    def row_prefiller(self) -> RowPrefiller | None:
        """A fresh prefiller for one request under invariant kernels (chunks are shared within a request only)."""
        return RowPrefiller(self.model, self.line_ends) if self.kernels == "invariant" else None

    @property
    def rows_per_pass(self) -> int:
        return 1 if self.kernels == "invariant" else self.batch_size

    @under_kernels
    def generate(self, task: str, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int],
                 on_batch: OnBatch = None) -> list[list[int]]:
        return generate_tokens(self.model, prompts, max_new_tokens=max_new_tokens, stop_ids=stop_ids, pad_id=self.pad_id,
                               batch_size=self.rows_per_pass, on_batch=on_batch, prefiller=self.row_prefiller(),
                               draft=self.draft)

    @under_kernels
    def score(self, task: str, sequences: Sequence[Sequence[int]], n_scored: Sequence[int], vocab_moments: bool = False,
              greedy: bool = False, on_batch: OnBatch = None) -> list[TokenScores]:
        return score_tokens(self.model, sequences, n_scored, pad_id=self.pad_id, batch_size=self.rows_per_pass,
                            vocab_moments=vocab_moments, greedy=greedy, on_batch=on_batch, prefiller=self.row_prefiller())

    @under_kernels
    def next_token_probs(self, task: str, prompts: Sequence[Sequence[int]], candidates: Sequence[int],
                         on_batch: OnBatch = None) -> list[list[float]]:
        return next_token_probs(self.model, prompts, candidates, pad_id=self.pad_id, batch_size=self.rows_per_pass,
                                on_batch=on_batch, prefiller=self.row_prefiller())

    @under_kernels
    def sample(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int],
               generators: Sequence[torch.Generator], temperature: float, top_p: float,
               on_batch: OnBatch = None) -> list[list[int]]:
        return generate_tokens(self.model, prompts, max_new_tokens=max_new_tokens, stop_ids=stop_ids, pad_id=self.pad_id,
                               batch_size=self.rows_per_pass, choose=nucleus_choice(generators, temperature, top_p),
                               on_batch=on_batch, prefiller=self.row_prefiller())

    @under_kernels
    @torch.no_grad()
    def layer_states(self, prompts: Sequence[Sequence[int]], modules: Sequence[Any]) -> torch.Tensor:
        """One prompt at a time (no padding, so the last token is the last position), read by forward hooks: a
        hook sees a module's output exactly where another hook (RepE's steering) would change it."""
        current: list[torch.Tensor] = []

        def record(module: Any, inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            current.append(hidden[0, -1].float())

        hooks = [module.register_forward_hook(record) for module in modules]
        states = []
        try:
            for prompt in prompts:
                current.clear()
                self.model(input_ids=torch.tensor([list(prompt)], device=self.device))
                states.append(torch.stack(current))
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(states)
