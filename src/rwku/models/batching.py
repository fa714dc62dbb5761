"""Batching primitives shared by generation and scoring: padding, ordering, and shared-prefix prefill.

RWKU prompts repeat long prefixes: every MMLU item of a task carries the same five demonstrations, every
TruthfulQA item the same primer, every BBH item its task's chain-of-thought examples, and all of them the chat
template's system turn. Rows are therefore ordered by their tokens (so rows with a common prefix share a batch),
and a batch's longest common prefix is run through the model once, its KV cache copied to every row, and only
the rows' own suffixes are computed. The suffixes are left-padded *after* the prefix; the attention mask hides
the padding and position ids follow the mask, so every row sees exactly its own tokens at their own positions.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import DynamicCache

#: Shorter common prefixes are not worth a separate forward pass.
MIN_SHARED_PREFIX = 8


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows into ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting only real tokens (padding gets the previous position; it is masked anyway)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def prefix_sorted_batches(rows: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices in token order (rows sharing a prefix end up together), cut into batches of ``batch_size``."""
    order = sorted(range(len(rows)), key=lambda i: (list(rows[i]), i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all ``rows`` share."""
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        n = 0
        while n < length and row[n] == first[n]:
            n += 1
        length = n
    return length


def cache_argument(model: Any) -> str:
    """Name of the forward argument that takes the KV cache (``cache`` from transformers 5.2x on)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrappers take **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@dataclass
class Prefill:
    """A batch after its prompts went through the model: cache, mask, and logits of the last positions."""

    cache: Any
    cache_kw: dict[str, Any]
    mask: torch.Tensor
    logits: torch.Tensor  # [rows, keep, vocab], float32
    last_position: torch.Tensor  # [rows]


@torch.no_grad()
def prefill(model: Any, rows: Sequence[Sequence[int]], pad_id: int, keep: int, first_needed: int) -> Prefill:
    """Run ``rows`` through ``model``, computing their common prefix once, keeping the last ``keep`` logits.

    ``first_needed`` is the smallest index (over rows) of a position whose logits are needed; the shared prefix
    stops before it so that every needed position lies in the per-row part.
    """
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    cache_kw = {cache_argument(model): cache}
    shared = min(common_prefix_length(rows), first_needed) if len(rows) > 1 else 0
    if shared >= MIN_SHARED_PREFIX:
        prefix = torch.tensor([list(rows[0][:shared])], device=device)
        model(input_ids=prefix, position_ids=torch.arange(shared, device=device)[None], use_cache=True,
              logits_to_keep=1, **cache_kw)
        cache.batch_repeat_interleave(len(rows))
        ids, suffix_mask = left_pad([r[shared:] for r in rows], pad_id, device)
        mask = torch.cat([suffix_mask.new_ones((len(rows), shared)), suffix_mask], dim=1)
        positions = positions_from_mask(mask)[:, shared:]
    else:
        ids, mask = left_pad(rows, pad_id, device)
        positions = positions_from_mask(mask)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=keep, **cache_kw)
    return Prefill(cache=cache, cache_kw=cache_kw, mask=mask, logits=out.logits.float(), last_position=positions[:, -1])
