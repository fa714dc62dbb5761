"""Slot decoding, the greedy and sampled decoding of invariant kernels: rows are prefilled alone and decoded in
passes of a fixed number of positions taken from any rows (:func:`decode_slots`), each position's attention alone
over its own row's keys. A row's bits never depend on the rows beside it, rows come and go as they finish, and the
positions no row needs verify prompt-lookup drafts (:mod:`rwku.models.decoding.drafting`), which changes how fast a
row finishes but never its tokens.

It registers :func:`slot_attention` with transformers' ``AttentionInterface`` at import and switches a model to it
through ``config._attn_implementation`` (:func:`attention_by_slot`); ``tests/test_transformers_internals.py`` fails,
naming the installed version, when either moves.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from rwku.models.decoding.choice import Choice, argmax_choice
from rwku.models.decoding.drafting import DRAFT_TOKENS, lookup_draft
from rwku.models.decoding.prefill import Prefill, RowPrefiller

#: Under invariant kernels every greedy decoding pass feeds exactly this many token positions ("slots"), taken from
#: any rows and any places in them (a missing slot is padding): a matmul's row comes out the same whichever rows
#: share the pass and wherever it sits in it (the bits do depend on the row count), and attention runs slot by slot
#: over the slot's own row (tests/test_decoding.py checks it). Why 64 and not 32: docs/performance.md.
DECODE_SLOTS = 64
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


def plan_slots(live: Sequence[SlotRow], *, max_new_tokens: int, draft: int, pad_id: int) -> list[Slot]:
    """A pass's :data:`DECODE_SLOTS` slots: every live row's newest token and, while slots are free, its
    prompt-lookup draft (up to ``draft`` tokens, never past its token limit), a row's slots side by side (so its
    keys are read again while still in the CPU's cache), then padding."""
    slots: list[Slot] = []
    free = DECODE_SLOTS - len(live)
    for row in live:
        slots.append(Slot(row, row.length, row.text[-1]))
        guess = lookup_draft(row.text, length=min(draft, free, max_new_tokens - len(row.generated))) if draft and free > 0 else []
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


def start_row(index: int, prompt: Sequence[int], state: Prefill, *, first: int, stops: set[int],
              max_new_tokens: int) -> SlotRow | None:
    """A prefilled prompt as a row holding its first token ``first``, or None when that token already ends it."""
    layers = state.cache.layers
    row = SlotRow(index=index, text=list(prompt), generated=[], keys=[layer.key_buffer for layer in layers],
                  values=[layer.value_buffer for layer in layers], length=len(prompt))
    return None if take(row, [first], stops, max_new_tokens) else row


@torch.no_grad()
def decode_slots(model: Any, prompts: Sequence[Sequence[int]], order: Sequence[int], *, max_new_tokens: int,
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
            state = prefiller(prompts[index], keep=1, needed_from_end=0, extra=max_new_tokens)
            first = int(choose([index], state.logits[:, -1, :])[0])
            row = start_row(index, prompts[index], state, first=first, stops=stops, max_new_tokens=max_new_tokens)
            if row is not None:
                live.append(row)
            elif on_done is not None:
                on_done(1)
        if not live:
            continue
        slots = plan_slots(live, max_new_tokens=max_new_tokens, draft=draft if greedy else 0, pad_id=pad_id)
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
