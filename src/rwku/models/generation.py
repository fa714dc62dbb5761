"""Batched greedy generation: shared-prefix prefill, and rows that leave the batch as soon as they finish.

``model.generate`` keeps computing every row until the whole batch is done; here a row leaves the batch (and
its KV cache) as soon as it emits a stop token or reaches its token limit. Position ids follow the attention
mask, so padding never shifts a row's positions and a prompt gets the same continuation at any batch size (up
to floating-point noise).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch

from rwku.models.batching import prefill, prefix_sorted_batches


@torch.no_grad()
def greedy_batch(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Iterable[int], pad_id: int) -> list[list[int]]:
    """Greedy continuations of one batch of tokenised prompts, each cut before its first stop token."""
    stops = set(stop_ids)
    state = prefill(model, prompts, pad_id, keep=1, needed_from_end=[0] * len(prompts), extra=max_new_tokens)
    cache, mask, last_position = state.cache, state.mask, state.last_position
    next_tokens = state.logits[:, -1, :].argmax(dim=-1)
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
            index = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(index)
            mask, last_position, next_tokens = mask[index], last_position[index], next_tokens[index]
            alive = [alive[k] for k in keep]
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        last_position = last_position + 1
        out = model(input_ids=next_tokens[:, None], attention_mask=mask, position_ids=last_position[:, None],
                    use_cache=True, **state.cache_kw)
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
    """Greedy continuations of all ``prompts`` (in input order), batched by shared prefix."""
    stops = list(stop_ids)
    results: list[list[int]] = [[] for _ in prompts]
    for batch in prefix_sorted_batches(prompts, batch_size):
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
