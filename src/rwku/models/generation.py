"""Batched decoding: shared-prefix prefill, and rows that leave the batch as soon as they finish.

``model.generate`` keeps computing every row until the whole batch is done; here a row leaves the batch (and
its KV cache) as soon as it emits a stop token or reaches its token limit. Position ids follow the attention
mask, so padding never shifts a row's positions and a prompt gets the same continuation at any batch size (up
to floating-point noise). Each step's token is picked by a *choice*: the argmax (greedy evaluation) or a draw
from the row's own seeded generator (corpus sampling), so a sampled row never depends on its batch either.

Under invariant kernels greedy rows are prefilled alone and decoded in fixed-shape steps (:func:`decode_fixed_rows`),
so a row's bits never depend on the rows beside it. One row at a time, greedy decoding can instead verify *prompt-lookup drafts*: the tokens that followed
the latest earlier occurrence of the text's last few tokens (BBH's chain of thought and the few-shot answers copy
much of their prompts) are checked in one forward pass, and only those the model would have chosen greedily are
kept. It is opt-in (``draft``): the verifying pass computes several positions at once, so its numbers are equal
to one-token steps only up to floating-point noise.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from rwku.models.batching import Prefill, RowPrefiller, caches_merge, merge_prefills, prefix_sorted_batches, run_prefill

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


#: Under invariant kernels every greedy decoding step runs exactly this many rows (rows that are missing or done
#: are fed anyway, their tokens ignored): a matmul's row then comes out the same whichever rows share the step
#: (measured: at 4, 8 and 16 rows a row's bits do not depend on its place or its neighbours; they do on the
#: row count), and attention runs row by row on each row's own keys.
DECODE_ROWS = 8
ROWWISE_ATTENTION = "rwku_rowwise"


def rowwise_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      rwku_key_starts: Sequence[int] = (), **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of each row over its own keys only (from ``rwku_key_starts[row]`` on: the batch's cache is
    right-aligned), unpadded: the same reductions as the row would run alone, whatever the cache's width."""
    outputs = []
    for row, start in enumerate(rwku_key_starts):
        output, _ = sdpa_attention_forward(module, query[row: row + 1], key[row: row + 1, :, start:].contiguous(),
                                           value[row: row + 1, :, start:].contiguous(), None, scaling=scaling, is_causal=False)
        outputs.append(output)
    return torch.cat(outputs), None


AttentionInterface.register(ROWWISE_ATTENTION, rowwise_attention)


@contextmanager
def attention_by_row(model: Any) -> Iterator[None]:
    """The model's attention replaced by :func:`rowwise_attention` for the duration (restored afterwards)."""
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = ROWWISE_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = saved


@torch.no_grad()
def decode_fixed_rows(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, stops: set[int],
                      prefiller: RowPrefiller) -> list[list[int]]:
    """Greedy continuations of up to :data:`DECODE_ROWS` prompts, each prefilled alone, decoded together in steps
    of exactly ``DECODE_ROWS`` rows (the last prompt repeated to fill them) with row-wise attention; every row
    stays in the step until all are done, as the official batches do."""
    states = [prefiller(prompt, 1, 0, extra=max_new_tokens) for prompt in prompts]
    states += [states[-1]] * (DECODE_ROWS - len(states))
    state = merge_prefills(model, states, max_new_tokens)
    mask, last_position = state.mask, state.last_position
    key_starts = (mask.shape[1] - mask.sum(dim=1)).tolist()
    tokens = state.logits[:, -1, :].argmax(dim=-1)
    generated: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    with attention_by_row(model):
        while True:
            for row, token in enumerate(tokens.tolist()[: len(prompts)]):
                if done[row]:
                    continue
                if token in stops:
                    done[row] = True
                    continue
                generated[row].append(token)
                done[row] = len(generated[row]) >= max_new_tokens
            if all(done):
                return generated
            mask = torch.cat([mask, mask.new_ones((DECODE_ROWS, 1))], dim=1)
            last_position = last_position + 1
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=last_position[:, None], use_cache=True,
                        rwku_key_starts=key_starts, **state.cache_kw)
            tokens = out.logits[:, -1, :].argmax(dim=-1)


#: Prompt-lookup drafting matches the text's last ``n`` tokens, ``n`` from this down to 1.
DRAFT_NGRAM = 3


@torch.no_grad()
def decode_batch(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Iterable[int], pad_id: int,
                 choose: Choice = argmax_choice, index: Sequence[int] | None = None,
                 prefiller: RowPrefiller | None = None, draft: int = 0) -> list[list[int]]:
    """Continuations of one batch of tokenised prompts, each cut before its first stop token; ``index`` names the
    prompts for ``choose`` (their positions in the whole request; default 0..n-1). With a ``prefiller`` the batch
    is one row, prefilled by it; ``draft`` > 0 (greedy, one row) verifies prompt-lookup drafts of that many tokens."""
    stops = set(stop_ids)
    index = list(index) if index is not None else list(range(len(prompts)))
    state = run_prefill(model, prompts, pad_id, 1, [0] * len(prompts), extra=max_new_tokens, prefiller=prefiller)
    if draft:
        if len(prompts) != 1 or choose is not argmax_choice:
            raise ValueError("prompt-lookup drafting decodes one row greedily")
        return [decode_drafted(model, state, prompts[0], max_new_tokens, stops, draft)]
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


def lookup_draft(text: Sequence[int], length: int, max_ngram: int = DRAFT_NGRAM) -> list[int]:
    """Up to ``length`` tokens that followed the latest earlier occurrence of the text's last ``n`` tokens, for the
    largest ``n`` <= ``max_ngram`` that occurs earlier; none when nothing matches."""
    for n in range(min(max_ngram, len(text) - 1), 0, -1):
        tail = list(text[-n:])
        for start in range(len(text) - n - 1, -1, -1):
            if text[start + n - 1] == tail[-1] and list(text[start:start + n]) == tail:
                return list(text[start + n: start + n + length])
    return []


@torch.no_grad()
def decode_drafted(model: Any, state: Prefill, prompt: Sequence[int], max_new_tokens: int, stops: set[int],
                   draft: int) -> list[int]:
    """Greedy continuation of one prefilled row, ``draft`` looked-up tokens verified per forward pass.

    The pass feeds the newest token and the draft; position i's argmax is what greedy decoding would choose after
    the draft's first i tokens, so the draft is kept up to its first disagreement, the model's own choice there
    follows, and the cache drops the entries of the rejected tail.
    """
    device = state.logits.device
    text, generated = list(prompt), []
    in_cache = len(prompt)
    token = int(state.logits[0, -1].argmax())
    while True:
        if token in stops:
            return generated
        generated.append(token)
        text.append(token)
        if len(generated) >= max_new_tokens:
            return generated
        guess = lookup_draft(text, min(draft, max_new_tokens - len(generated)))
        fed = [token] + guess
        out = model(input_ids=torch.tensor([fed], device=device), position_ids=torch.arange(in_cache, in_cache + len(fed), device=device)[None],
                    use_cache=True, logits_to_keep=len(fed), **state.cache_kw)
        greedy = out.logits[0].argmax(-1).tolist()
        accepted = 0
        while accepted < len(guess) and guess[accepted] == greedy[accepted]:
            accepted += 1
        if accepted < len(guess):
            state.cache.crop(accepted - len(guess))
        in_cache += 1 + accepted
        for kept in guess[:accepted]:
            if kept in stops:
                return generated
            generated.append(kept)
            text.append(kept)
            if len(generated) >= max_new_tokens:
                return generated
        token = greedy[accepted]


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
    draft: int = 0,
) -> list[list[int]]:
    """Continuations of all ``prompts`` (in input order), batched by shared prefix; greedy unless ``choose`` says.
    With a ``prefiller`` (invariant kernels) each prompt is prefilled alone by it; greedy rows then decode
    :data:`DECODE_ROWS` at a time in fixed-shape steps, or, with ``draft`` > 0, one at a time verifying
    ``draft``-token prompt-lookup drafts; sampled rows, and models with sliding-window layers (whose caches do not
    merge), decode one at a time (``batch_size`` 1)."""
    stops = list(stop_ids)
    results: list[list[int]] = [[] for _ in prompts]
    fixed_rows = prefiller is not None and not draft and choose is argmax_choice and caches_merge(model)
    for batch in prefix_sorted_batches(prompts, DECODE_ROWS if fixed_rows else batch_size):
        if fixed_rows:
            rows = decode_fixed_rows(model, [prompts[i] for i in batch], max_new_tokens, set(stops), prefiller)
        else:
            rows = decode_batch(model, [prompts[i] for i in batch], max_new_tokens, stops, pad_id, choose, index=batch,
                                prefiller=prefiller, draft=draft)
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
