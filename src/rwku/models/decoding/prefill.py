"""Prefill: prompts through the model before decoding or scoring, in one of two regimes.

Under ``fast`` kernels (:func:`prefill`): padding, ordering, and shared-prefix prefill, described below. Under
invariant kernels (:class:`RowPrefiller`): one row per pass, its prompt in chunks that end at its own line ends
(:func:`chunk_ends`), a chunk an earlier row computed for the same tokens copied, not recomputed.

RWKU prompts repeat long prefixes: every MMLU item of a task carries the same five demonstrations, every
TruthfulQA item the same primer, every BBH item its task's chain-of-thought examples, and all of them the chat
template's system turn. Rows are therefore ordered by their tokens (so rows with a common prefix share a batch)
and each batch is split into groups with a long common prefix. A group's prefix is run through the model once,
its KV cache copied to every row, and only the rows' own suffixes are computed; a row sharing nothing runs alone,
unpadded. The suffixes are left-padded *after* the prefix; the attention mask hides the padding and position ids
follow the mask, so every row sees exactly its own tokens at their own positions. For generation the groups'
caches are merged (right-aligned) into one batch for decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import DynamicCache

from rwku.models.decoding.cache import PreallocatedLayer, cache_argument, make_cache

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
    """Indices cut into batches of ``batch_size``: in token order when neighbours share long prefixes (so a
    batch's prefix is computed once), else longest first (so padding is small), e.g. for MIA texts."""
    order = sorted(range(len(rows)), key=lambda i: (list(rows[i]), i))
    shared = [common_prefix_length([rows[a], rows[b]]) for a, b in zip(order, order[1:])]
    mean_length = sum(len(r) for r in rows) / max(len(rows), 1)
    if not shared or sum(shared) / len(shared) < 0.25 * mean_length:
        order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]), i))
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


@dataclass
class Prefill:
    """A batch after its prompts went through the model: cache, mask, and logits of the last positions."""

    cache: Any
    cache_kw: dict[str, Any]
    mask: torch.Tensor
    logits: torch.Tensor  # [rows, keep, vocab], float32
    last_position: torch.Tensor  # [rows]


def prefix_groups(rows: Sequence[Sequence[int]]) -> list[list[int]]:
    """Split consecutive rows into groups whose common prefix is long: at least half of their shortest row.

    Rows sorted by tokens arrive with same-task rows next to each other; each group's prefix is computed once,
    and a row sharing no long prefix with its neighbours is computed alone (no padding at all).
    """
    groups: list[list[int]] = [[0]] if rows else []
    for i in range(1, len(rows)):
        candidate = [rows[j] for j in groups[-1]] + [rows[i]]
        shared = common_prefix_length(candidate)
        if shared >= MIN_SHARED_PREFIX and shared * 2 >= min(len(r) for r in candidate):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


@torch.no_grad()
def prefill_group(model: Any, rows: Sequence[Sequence[int]], *, pad_id: int, keep: int, first_needed: int, extra: int,
                  need_cache: bool) -> Prefill:
    """One group: its common prefix once (up to ``first_needed``), then every row's own suffix."""
    device = next(model.parameters()).device
    shared = min(common_prefix_length(rows), first_needed) if len(rows) > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    cache = make_cache(model, max(len(r) for r in rows) + extra) if shared or need_cache else None
    cache_kw = {cache_argument(model): cache} if cache is not None else {}
    if shared:
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
    # a single unpadded row needs no mask, which lets attention use its fast causal path
    attention = None if len(rows) == 1 and not shared else mask
    out = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=cache is not None,
                logits_to_keep=keep, **cache_kw)
    return Prefill(cache=cache, cache_kw=cache_kw, mask=mask, logits=out.logits.float(), last_position=positions[:, -1])


def merge_prefills(model: Any, parts: Sequence[Prefill], *, extra: int) -> Prefill:
    """Stack groups into one batch for decoding: each group's cache and mask right-aligned, zeros masked on the left."""
    width = max(p.mask.shape[1] for p in parts)
    rows = sum(p.mask.shape[0] for p in parts)
    cache = make_cache(model, width + extra)
    for index, layer in enumerate(cache.layers):
        sources = [p.cache.layers[index] for p in parts]
        if not isinstance(layer, PreallocatedLayer) or any(not isinstance(src, PreallocatedLayer) for src in sources):
            raise ValueError("cannot merge caches of sliding-window layers")
        first = sources[0].keys
        layer.lazy_initialization(first, first)
        layer.key_buffer = first.new_zeros((rows, first.shape[1], width + extra, first.shape[-1]))
        layer.value_buffer = torch.zeros_like(layer.key_buffer)
        start = 0
        for src in sources:
            n, length = src.keys.shape[0], src.length
            layer.key_buffer[start:start + n, :, width - length:width] = src.keys
            layer.value_buffer[start:start + n, :, width - length:width] = src.values
            start += n
        layer.length = width
        layer._expose()
    mask = torch.zeros((rows, width), dtype=parts[0].mask.dtype, device=parts[0].mask.device)
    start = 0
    for part in parts:
        n, length = part.mask.shape
        mask[start:start + n, width - length:] = part.mask
        start += n
    return Prefill(cache=cache, cache_kw={cache_argument(model): cache}, mask=mask,
                   logits=torch.cat([p.logits for p in parts]), last_position=torch.cat([p.last_position for p in parts]))


def prefill(model: Any, rows: Sequence[Sequence[int]], *, pad_id: int, keep: int, needed_from_end: Sequence[int],
            extra: int = 0) -> Prefill:
    """Run a batch through ``model``, each prefix group's common prefix once, keeping the last ``keep`` logits.

    ``needed_from_end[i]`` is how many positions before row i's last one need logits (0: only the last), so
    that no needed position falls into a shared prefix. ``extra`` is the room the cache needs for generation;
    with ``extra`` the groups are merged into one cache for batched decoding (rows keep their order).
    """
    groups = prefix_groups(rows)
    parts = []
    for group in groups:
        members = [rows[i] for i in group]
        first_needed = min(len(rows[i]) - 1 - needed_from_end[i] for i in group)
        group_keep = min(keep, max(needed_from_end[i] for i in group) + 1)
        single = len(groups) == 1
        part = prefill_group(model, members, pad_id=pad_id, keep=group_keep, first_needed=first_needed,
                             extra=extra if single else 0, need_cache=extra > 0)
        if part.logits.shape[1] < keep:  # align the last positions of every group
            part.logits = torch.nn.functional.pad(part.logits, (0, 0, keep - part.logits.shape[1], 0))
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    if extra:
        return merge_prefills(model, parts, extra=extra)
    return Prefill(cache=None, cache_kw={}, mask=parts[0].mask, logits=torch.cat([p.logits for p in parts]),
                   last_position=torch.cat([p.last_position for p in parts]))


@dataclass(frozen=True)
class LineEnds:
    """A tokenizer's tokens that end a line: where a prompt's chunks may end (see :func:`chunk_ends`)."""

    newline: frozenset[int] = frozenset()  # every token whose text ends in a newline
    blank: frozenset[int] = frozenset()  # those ending in two (a blank line in one token)

    @classmethod
    def of(cls, tokenizer: Any) -> "LineEnds":
        """Decode every token once (a third of a second for a 49k vocabulary)."""
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        return cls(frozenset(i for i, text in enumerate(texts) if text.endswith("\n")),
                   frozenset(i for i, text in enumerate(texts) if text.endswith("\n\n")))


@dataclass(frozen=True)
class ChunkRule:
    """How long a chunk must be before a line end may close it, and how long it may grow.

    A pass costs a fixed part (reading every weight once) plus a part per token. A chunk a row computes
    itself is therefore worth a pass only when later rows reuse it, and the three minimums say where that is
    likely: the first chunk (the chat template's system turn, shared by every prompt of a request), a chunk
    closed by a blank line (the end of a few-shot demonstration or of a primer), and anything else (the lines of
    a question, rarely shared, are best run in one pass). Without line ends the chunks are fixed blocks of
    ``longest`` tokens. The defaults were chosen on real target 1 by benchmarks/bench_prefill.py; the measurements
    are in docs/performance.md ("What the invariant kernels share").
    """

    first: int = 16
    blank_line: int = 32
    newline: int = 128
    longest: int = 512


def chunk_ends(row: Sequence[int], *, first_needed: int, line_ends: LineEnds, rule: ChunkRule = ChunkRule()) -> list[int]:
    """Where the chunks of a row's prompt end (exclusive), walking from its start: after a line end once the chunk
    holds the minimum ``rule`` sets for that kind of line end, and after ``rule.longest`` tokens in any case. No
    chunk reaches past ``first_needed`` (the first position whose logits are needed: it and the rest run in one
    final pass). Whether a chunk ends after a position depends only on the tokens up to it, so rows with equal
    prefixes get equal chunks inside them."""
    ends: list[int] = []
    start = 0
    for position in range(first_needed):
        length, token = position + 1 - start, row[position]
        if token in line_ends.newline:
            blank = token in line_ends.blank or (position > 0 and row[position - 1] in line_ends.newline)
            least = rule.first if not ends else rule.blank_line if blank else rule.newline
        else:
            least = rule.longest  # no line end here: only the longest length closes the chunk
        if length >= min(least, rule.longest):
            ends.append(position + 1)
            start = position + 1
    return ends


class RowPrefiller:
    """Prefill for one row per forward pass: the prompt in content-defined chunks (:func:`chunk_ends`), the
    chunks the previous row already computed for the same tokens copied from its cache instead of recomputed.

    A row's numbers depend on the row alone. Its chunk boundaries are a function of its own tokens (where its
    lines end, ``line_ends``, and ``rule``) up to the first position whose logits are needed, and the rest runs in
    one pass; each chunk sees exactly the cache of the chunks before it. A chunk copied from an earlier row (equal
    tokens up to its end, so equal boundaries) therefore holds the very bits this row would have computed itself,
    and every output is the same whichever rows come before it (any batch size, any ``--limit``, any order). Rows
    sorted by tokens then skip the chunks they share: the chat template's system turn, and, since chunks end at
    blank lines, the few-shot demonstrations and primer paragraphs that end in one (MMLU, BBH, TruthfulQA). The
    cache has room for ``extra`` generated tokens (preallocated).
    """

    def __init__(self, model: Any, line_ends: LineEnds = LineEnds(), rule: ChunkRule = ChunkRule()):
        self.model, self.line_ends, self.rule = model, line_ends, rule
        self.device = next(model.parameters()).device
        self.previous_row: Sequence[int] = ()
        self.previous_ends: list[int] = []
        self.previous_cache: DynamicCache | None = None

    def reusable_chunks(self, row: Sequence[int], ends: Sequence[int]) -> int:
        """How many of this row's leading chunks the previous row computed for the same tokens."""
        if self.previous_cache is None or not all(isinstance(layer, PreallocatedLayer) for layer in self.previous_cache.layers):
            return 0
        shared = common_prefix_length([self.previous_row, row])
        reused = 0
        for end, previous_end in zip(ends, self.previous_ends):
            if end != previous_end or end > shared:
                break
            reused += 1
        return reused

    @torch.no_grad()
    def __call__(self, row: Sequence[int], *, keep: int, needed_from_end: int, extra: int = 0) -> Prefill:
        """Row ``row`` through the model, keeping the logits of its last ``keep`` positions (``needed_from_end``
        positions before the last one need logits, so no chunk may hold them)."""
        ends = chunk_ends(row, first_needed=len(row) - 1 - needed_from_end, line_ends=self.line_ends, rule=self.rule)
        if not ends and not extra:  # nothing to chunk and no cache to keep: one plain pass, as the official code
            out = self.model(input_ids=torch.tensor([list(row)], device=self.device), logits_to_keep=keep)
            return Prefill(cache=None, cache_kw={}, mask=torch.ones((1, len(row)), dtype=torch.long, device=self.device),
                           logits=out.logits.float(), last_position=torch.tensor([len(row) - 1], device=self.device))
        cache = make_cache(self.model, len(row) + extra)
        cache_kw = {cache_argument(self.model): cache}
        reused = self.reusable_chunks(row, ends)
        if reused:
            copied = ends[reused - 1]
            for layer, source in zip(cache.layers, self.previous_cache.layers):
                layer.update(source.keys[..., :copied, :], source.values[..., :copied, :])
        starts = [0, *ends]
        for start, end in zip(starts[reused:], [*ends[reused:], len(row)]):
            out = self.model(input_ids=torch.tensor([list(row[start:end])], device=self.device),
                             position_ids=torch.arange(start, end, device=self.device)[None], use_cache=True,
                             logits_to_keep=keep if end == len(row) else 1, **cache_kw)
        self.previous_row, self.previous_ends, self.previous_cache = row, ends, cache
        return Prefill(cache=cache, cache_kw=cache_kw, mask=torch.ones((1, len(row)), dtype=torch.long, device=self.device),
                       logits=out.logits.float(), last_position=torch.tensor([len(row) - 1], device=self.device))


def run_prefill(model: Any, rows: Sequence[Sequence[int]], *, pad_id: int, keep: int, needed_from_end: Sequence[int],
                extra: int = 0, prefiller: RowPrefiller | None = None) -> Prefill:
    """:func:`prefill` of a batch, or, with a row prefiller (one row per pass), of its one row."""
    if prefiller is None:
        return prefill(model, rows, pad_id=pad_id, keep=keep, needed_from_end=needed_from_end, extra=extra)
    (row,), (needed,) = rows, needed_from_end
    return prefiller(row, keep=keep, needed_from_end=needed, extra=extra)
