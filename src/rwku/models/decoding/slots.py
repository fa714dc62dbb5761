"""Batched decoding: shared-prefix prefill, and rows that leave the batch as soon as they finish.

``model.generate`` keeps computing every row until the whole batch is done; here a row leaves the batch (and
its KV cache) as soon as it emits a stop token or reaches its token limit. Position ids follow the attention
mask, so padding never shifts a row's positions and a prompt gets the same continuation at any batch size (up
to floating-point noise). Each step's token is picked by a *choice*: the argmax (greedy evaluation) or a draw
from the row's own seeded generator (corpus sampling), so a sampled row never depends on its batch either.

Under invariant kernels greedy rows are prefilled alone and decoded in passes of a fixed number of positions taken
from any rows (:func:`decode_slots`): a row's bits never depend on the rows beside it, rows come and go as they
finish, and the positions no row needs verify *prompt-lookup drafts*, which changes how fast a row finishes but
never its tokens.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from rwku.models.batching import Prefill, RowPrefiller, caches_merge, prefix_sorted_batches, run_prefill

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


#: Under invariant kernels every greedy decoding pass feeds exactly this many token positions ("slots"), taken from
#: any rows and any places in them (a missing slot is padding): a matmul's row comes out the same whichever rows
#: share the pass and wherever it sits in it (the bits do depend on the row count), and attention runs slot by slot
#: over the slot's own row (tests/test_decoding.py checks it). Why 64 and not 32: docs/performance.md.
DECODE_SLOTS = 64
#: The most draft tokens one row gets in a pass (when slots are free; see :func:`decode_slots`).
DRAFT_TOKENS = 8
SLOT_ATTENTION = "rwku_slots"


@dataclass
class SlotRow:
    """One prompt being decoded greedily: its text so far, its own preallocated KV buffers (one key and one value
    tensor [1, kv heads, capacity, head size] per layer) and how many positions they hold."""

    index: int
    text: list[int]  # prompt and generated tokens; the last one is the newest, not yet fed
    generated: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int  # positions the buffers hold: the newest token goes to this one


@dataclass(frozen=True)
class Slot:
    """One fed position of a pass: a row's token at ``position`` (``row`` None: padding)."""

    row: SlotRow | None
    position: int
    token: int


def slot_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                   rwku_slots: Sequence[Slot] = (), **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of a pass of slots: every slot's key and value are written into its row's buffer at its
    position first (so a draft slot sees the slots before it in its row), then each slot attends alone, one query
    over exactly positions 0..position of its own row: the same call, on the same numbers, whatever else the pass
    holds. Padding slots give zeros."""
    layer = module.layer_idx
    for j, slot in enumerate(rwku_slots):
        if slot.row is not None:
            slot.row.keys[layer][:, :, slot.position] = key[:, :, j]
            slot.row.values[layer][:, :, slot.position] = value[:, :, j]
    outputs, padding = [], query.new_zeros((1, query.shape[1], 1, query.shape[-1]))
    for j, slot in enumerate(rwku_slots):
        if slot.row is None:
            outputs.append(padding)
            continue
        end = slot.position + 1
        outputs.append(F.scaled_dot_product_attention(query[:, :, j: j + 1], slot.row.keys[layer][:, :, :end],
                                                      slot.row.values[layer][:, :, :end], scale=scaling, enable_gqa=True))
    return torch.cat(outputs, dim=2).transpose(1, 2), None


AttentionInterface.register(SLOT_ATTENTION, slot_attention)


@contextmanager
def attention_by_slot(model: Any) -> Iterator[None]:
    """The model's attention replaced by :func:`slot_attention` for the duration (restored afterwards)."""
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = SLOT_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = saved


def plan_slots(live: Sequence[SlotRow], max_new_tokens: int, draft: int, pad_id: int) -> list[Slot]:
    """A pass's :data:`DECODE_SLOTS` slots: every live row's newest token and, while slots are free, its
    prompt-lookup draft (up to ``draft`` tokens, never past its token limit), a row's slots side by side (so its
    keys are read again while still in the CPU's cache), then padding."""
    slots: list[Slot] = []
    free = DECODE_SLOTS - len(live)
    for row in live:
        slots.append(Slot(row, row.length, row.text[-1]))
        guess = lookup_draft(row.text, min(draft, free, max_new_tokens - len(row.generated))) if draft and free > 0 else []
        slots += [Slot(row, row.length + 1 + i, token) for i, token in enumerate(guess)]
        free -= len(guess)
    return slots + [Slot(None, 0, pad_id)] * (DECODE_SLOTS - len(slots))


def take(row: SlotRow, tokens: Sequence[int], stops: set[int], max_new_tokens: int) -> bool:
    """Append greedy tokens to ``row`` up to a stop token (not kept) or its token limit. Whether the row is done."""
    for token in tokens:
        if token in stops:
            return True
        row.generated.append(token)
        row.text.append(token)
        if len(row.generated) >= max_new_tokens:
            return True
    return False


def accept(row: SlotRow, drafted: Sequence[int], greedy: Sequence[int], stops: set[int], max_new_tokens: int) -> bool:
    """After a pass: the drafts greedy decoding would have chosen (up to the first disagreement), then the model's
    own choice, go into ``row``; its buffers keep the fed token and the kept drafts (the rejected ones are
    overwritten later). Whether the row is done."""
    kept = 0
    while kept < len(drafted) and drafted[kept] == greedy[kept]:
        kept += 1
    row.length += 1 + kept
    return take(row, [*drafted[:kept], greedy[kept]], stops, max_new_tokens)


def start_row(index: int, prompt: Sequence[int], state: Prefill, first: int, stops: set[int], max_new_tokens: int) -> SlotRow | None:
    """A prefilled prompt as a row holding its first token ``first``, or None when that token already ends it."""
    layers = state.cache.layers
    row = SlotRow(index=index, text=list(prompt), generated=[], keys=[layer.key_buffer for layer in layers],
                  values=[layer.value_buffer for layer in layers], length=len(prompt))
    return None if take(row, [first], stops, max_new_tokens) else row


@torch.no_grad()
def decode_slots(model: Any, prompts: Sequence[Sequence[int]], order: Sequence[int], max_new_tokens: int,
                 stops: set[int], pad_id: int, prefiller: RowPrefiller, draft: int = DRAFT_TOKENS,
                 choose: Choice = argmax_choice, on_done: Callable[[int], None] | None = None) -> list[list[int]]:
    """Continuations under invariant kernels, greedy unless ``choose`` says: rows decode together in passes of
    exactly :data:`DECODE_SLOTS` positions (:func:`plan_slots`); a row that finishes leaves at once and the next
    prompt (in ``order``, prefilled alone by ``prefiller``) takes its place. When greedy, slots no row needs verify
    prompt-lookup drafts: the tokens that followed the latest earlier occurrence of the row's last few tokens (BBH's
    chain of thought and the few-shot answers copy much of their prompts); a drafted position computes exactly what
    the same position computes when fed alone, so only the tokens greedy decoding would choose are kept and the
    output is the same bits with or without drafting, in any company. A sampled row draws once per token from its
    own generator (``choose``, e.g. :func:`nucleus_choice`), never drafts, and so gets the same tokens in any
    company too."""
    greedy = choose is argmax_choice
    results: list[list[int]] = [[] for _ in prompts]
    queue, live = list(order), []
    while queue or live:
        while queue and len(live) < DECODE_SLOTS:
            index = queue.pop(0)
            state = prefiller(prompts[index], 1, 0, extra=max_new_tokens)
            first = int(choose([index], state.logits[:, -1, :])[0])
            row = start_row(index, prompts[index], state, first, stops, max_new_tokens)
            if row is not None:
                live.append(row)
            elif on_done is not None:
                on_done(1)
        if not live:
            continue
        slots = plan_slots(live, max_new_tokens, draft if greedy else 0, pad_id)
        logits = run_slots(model, slots)
        mine = [[j for j, s in enumerate(slots) if s.row is row] for row in live]
        if greedy:
            chosen = logits.argmax(dim=-1).tolist()
        else:  # one draw per row, from the logits of its newest (its only) slot
            newest = [own[0] for own in mine]
            chosen = [pad_id] * len(slots)
            for j, token in zip(newest, choose([row.index for row in live], logits[newest]).tolist()):
                chosen[j] = token
        still = []
        for row, own in zip(live, mine):
            if accept(row, [slots[j].token for j in own[1:]], [chosen[j] for j in own], stops, max_new_tokens):
                results[row.index] = row.generated
                if on_done is not None:
                    on_done(1)
            else:
                still.append(row)
        live = still
    return results


def run_slots(model: Any, slots: Sequence[Slot]) -> torch.Tensor:
    """One pass over ``slots`` (their keys and values written into their rows): each slot's next-token logits
    [slots, vocab], float32."""
    device = next(model.parameters()).device
    with attention_by_slot(model):
        out = model(input_ids=torch.tensor([[s.token for s in slots]], device=device), use_cache=False,
                    position_ids=torch.tensor([[s.position for s in slots]], device=device), rwku_slots=slots)
    return out.logits[0].float()


#: Prompt-lookup drafting matches the text's last ``n`` tokens, ``n`` from this down to 1.
DRAFT_NGRAM = 3


@torch.no_grad()
def decode_batch(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Iterable[int], pad_id: int,
                 choose: Choice = argmax_choice, index: Sequence[int] | None = None,
                 prefiller: RowPrefiller | None = None) -> list[list[int]]:
    """Continuations of one batch of tokenised prompts, each cut before its first stop token; ``index`` names the
    prompts for ``choose`` (their positions in the whole request; default 0..n-1). With a ``prefiller`` the batch
    is one row, prefilled by it."""
    stops = set(stop_ids)
    index = list(index) if index is not None else list(range(len(prompts)))
    state = run_prefill(model, prompts, pad_id, 1, [0] * len(prompts), extra=max_new_tokens, prefiller=prefiller)
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
        return decode_slots(model, prompts, order, max_new_tokens, set(stops), pad_id, prefiller, draft, choose=choose,
                            on_done=on_batch)
    results: list[list[int]] = [[] for _ in prompts]
    for batch in prefix_sorted_batches(prompts, batch_size):
        rows = decode_batch(model, [prompts[i] for i in batch], max_new_tokens, stops, pad_id, choose, index=batch,
                            prefiller=prefiller)
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
