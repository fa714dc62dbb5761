"""Batched greedy generation that sorts prompts by length and drops finished rows from the batch.

``model.generate`` keeps computing every row until the whole batch is done; here a row leaves the batch (and
its KV cache) as soon as it emits a stop token or reaches its token limit, so long-running rows do not drag
finished ones along. Position ids are derived from the attention mask, so left padding does not shift
positions and a prompt gets the same continuation at any batch size (up to floating-point noise).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Sequence

import torch
from transformers import DynamicCache


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
    """Position ids that start at 0 on each row's first real token (left padding gets 0 too)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (so memory trouble shows up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def cache_argument(model: Any) -> str:
    """Name of the forward argument that takes the KV cache (``cache`` from transformers 5.2x on)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrappers take **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.no_grad()
def greedy_batch(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Iterable[int], pad_id: int) -> list[list[int]]:
    """Greedy continuations of one batch of tokenised prompts, each cut before its first stop token."""
    device = next(model.parameters()).device
    stops = set(stop_ids)
    ids, mask = left_pad(prompts, pad_id, device)
    cache = DynamicCache(config=model.config)
    cache_kw = {cache_argument(model): cache}
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask), use_cache=True, logits_to_keep=1, **cache_kw)
    next_tokens = out.logits[:, -1, :].argmax(dim=-1)
    last_position = positions_from_mask(mask)[:, -1]
    alive = list(range(len(prompts)))
    generated: list[list[int]] = [[] for _ in prompts]
    while alive:
        keep = []
        for local, (row, token) in enumerate(zip(alive, next_tokens.tolist())):
            if token in stops:
                continue
            generated[row].append(token)
            if len(generated[row]) < max_new_tokens:
                keep.append(local)
        if not keep:
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, last_position, next_tokens = mask[index], last_position[index], next_tokens[index]
            alive = [alive[k] for k in keep]
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        last_position = last_position + 1
        out = model(
            input_ids=next_tokens[:, None],
            attention_mask=mask,
            position_ids=last_position[:, None],
            use_cache=True,
            **cache_kw,
        )
        next_tokens = out.logits[:, -1, :].argmax(dim=-1)
    return generated


def greedy_generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Iterable[int],
    pad_id: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Greedy continuations of all ``prompts`` (in input order), batched by similar length."""
    stops = list(stop_ids)
    results: list[list[int]] = [[] for _ in prompts]
    for batch in length_sorted_batches([len(p) for p in prompts], batch_size):
        for row, tokens in zip(batch, greedy_batch(model, [prompts[i] for i in batch], max_new_tokens, stops, pad_id)):
            results[row] = tokens
        if on_batch is not None:
            on_batch(len(batch))
    return results


def decode_continuation(tokenizer: Any, prompt: Sequence[int], continuation: Sequence[int]) -> str:
    """Text the model added, cut the official way: decode prompt+continuation, drop the decoded prompt.

    Decoding the continuation alone can lose a leading space for some tokenizers, so the official code decodes
    both with special tokens skipped and slices off the prompt's characters; we do the same.
    """
    if not continuation:
        return ""
    full = tokenizer.decode(list(prompt) + list(continuation), skip_special_tokens=True)
    head = tokenizer.decode(list(prompt), skip_special_tokens=True)
    return full[len(head):]
