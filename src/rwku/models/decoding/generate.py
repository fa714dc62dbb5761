"""Continuations of tokenised prompts, and their text: :func:`generate_tokens` decodes by slots under invariant
kernels (:mod:`rwku.models.decoding.slots`) and in batches otherwise (:mod:`rwku.models.decoding.fast`)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from rwku.models.decoding.cache import caches_merge
from rwku.models.decoding.choice import Choice, argmax_choice
from rwku.models.decoding.drafting import DRAFT_TOKENS
from rwku.models.decoding.fast import decode_batch
from rwku.models.decoding.prefill import RowPrefiller, prefix_sorted_batches
from rwku.models.decoding.slots import decode_slots


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
    prefiller: RowPrefiller | None = None,
    draft: int = DRAFT_TOKENS,
) -> list[list[int]]:
    """Continuations of all ``prompts`` (in input order), batched by shared prefix; greedy unless ``choose`` says.
    With a ``prefiller`` (invariant kernels) each prompt is prefilled alone by it, then rows decode in fixed-shape
    passes (:func:`decode_slots`; greedy rows verify drafts of up to ``draft`` tokens in free slots, 0: none);
    models with sliding-window layers (whose caches :func:`decode_slots` cannot address) decode one row at a time
    (``batch_size`` 1)."""
    stops = list(stop_ids)
    if prefiller is not None and caches_merge(model):
        order = [i for batch in prefix_sorted_batches(prompts, len(prompts) or 1) for i in batch]
        return decode_slots(model, prompts, order, max_new_tokens=max_new_tokens, stops=set(stops), pad_id=pad_id,
                            prefiller=prefiller, draft=draft, choose=choose, on_done=on_batch)
    results: list[list[int]] = [[] for _ in prompts]
    for batch in prefix_sorted_batches(prompts, batch_size):
        rows = decode_batch(model, [prompts[i] for i in batch], max_new_tokens=max_new_tokens, stop_ids=stops,
                            pad_id=pad_id, choose=choose, index=batch, prefiller=prefiller)
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
