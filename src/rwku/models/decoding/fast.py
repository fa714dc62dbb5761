"""Batched decoding: shared-prefix prefill, and rows that leave the batch as soon as they finish.

``model.generate`` keeps computing every row until the whole batch is done; here a row leaves the batch (and its KV
cache) as soon as it emits a stop token or reaches its token limit. Position ids follow the attention mask, so
padding never shifts a row's positions and a prompt gets the same continuation at any batch size (up to
floating-point noise under ``fast`` kernels). Used under ``fast`` kernels, and one row at a time under invariant
kernels for models whose caches slot decoding cannot address (sliding-window layers).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from rwku.models.decoding.choice import Choice, argmax_choice
from rwku.models.decoding.prefill import RowPrefiller, run_prefill


@torch.no_grad()
def decode_batch(model: Any, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, stop_ids: Iterable[int],
                 pad_id: int, choose: Choice = argmax_choice, index: Sequence[int] | None = None,
                 prefiller: RowPrefiller | None = None) -> list[list[int]]:
    """Continuations of one batch of tokenised prompts, each cut before its first stop token; ``index`` names the
    prompts for ``choose`` (their positions in the whole request; default 0..n-1). With a ``prefiller`` the batch
    is one row, prefilled by it."""
    stops = set(stop_ids)
    index = list(index) if index is not None else list(range(len(prompts)))
    state = run_prefill(model, prompts, pad_id=pad_id, keep=1, needed_from_end=[0] * len(prompts), extra=max_new_tokens,
                        prefiller=prefiller)
    cache, mask, last_position = state.cache, state.mask, state.last_position
    alive = list(range(len(prompts)))
    next_tokens = choose(index, state.logits[:, -1, :])
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
            kept = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(kept)
            mask, last_position, next_tokens = mask[kept], last_position[kept], next_tokens[kept]
            alive = [alive[k] for k in keep]
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        last_position = last_position + 1
        out = model(input_ids=next_tokens[:, None], attention_mask=mask, position_ids=last_position[:, None],
                    use_cache=True, **state.cache_kw)
        next_tokens = choose([index[row] for row in alive], out.logits[:, -1, :])
    return generated
