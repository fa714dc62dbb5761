"""Batched decoding: shared-prefix prefill, and rows that leave the batch as soon as they finish.

``model.generate`` keeps computing every row until the whole batch is done; here a row leaves the batch (and
its KV cache) as soon as it emits a stop token or reaches its token limit. Position ids follow the attention
mask, so padding never shifts a row's positions and a prompt gets the same continuation at any batch size (up
to floating-point noise). Each step's token is picked by a *choice*: the argmax (greedy evaluation) or a draw
from the row's own seeded generator (corpus sampling), so a sampled row never depends on its batch either.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch

from rwku.models.batching import prefill, prefix_sorted_batches

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


@torch.no_grad()
def decode_batch(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Iterable[int], pad_id: int,
                 choose: Choice = argmax_choice, index: Sequence[int] | None = None) -> list[list[int]]:
    """Continuations of one batch of tokenised prompts, each cut before its first stop token; ``index`` names the
    prompts for ``choose`` (their positions in the whole request; default 0..n-1)."""
    stops = set(stop_ids)
    index = list(index) if index is not None else list(range(len(prompts)))
    state = prefill(model, prompts, pad_id, keep=1, needed_from_end=[0] * len(prompts), extra=max_new_tokens)
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


def generate_tokens(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Iterable[int],
    pad_id: int,
    batch_size: int,
    choose: Choice = argmax_choice,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Continuations of all ``prompts`` (in input order), batched by shared prefix; greedy unless ``choose`` says."""
    stops = list(stop_ids)
    results: list[list[int]] = [[] for _ in prompts]
    for batch in prefix_sorted_batches(prompts, batch_size):
        rows = decode_batch(model, [prompts[i] for i in batch], max_new_tokens, stops, pad_id, choose, index=batch)
        for row, tokens in zip(batch, rows):
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
