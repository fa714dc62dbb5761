"""Prompt-lookup drafts: tokens a row is likely to write next, copied from where its last few tokens occurred
before (BBH's chain of thought and the few-shot answers copy much of their prompts). Slot decoding verifies them in
free slots and keeps only those greedy decoding would have chosen (:mod:`rwku.models.decoding.slots`)."""

from __future__ import annotations

from typing import Sequence

#: The most draft tokens one row gets in a pass (when slots are free; see :func:`rwku.models.decoding.slots.decode_slots`).
DRAFT_TOKENS = 8
#: Prompt-lookup drafting matches the text's last ``n`` tokens, ``n`` from this down to 1.
DRAFT_NGRAM = 3


def lookup_draft(text: Sequence[int], *, length: int, max_ngram: int = DRAFT_NGRAM) -> list[int]:
    """Up to ``length`` tokens that followed the latest earlier occurrence of the text's last ``n`` tokens, for the
    largest ``n`` <= ``max_ngram`` that occurs earlier; none when nothing matches."""
    for n in range(min(max_ngram, len(text) - 1), 0, -1):
        tail = list(text[-n:])
        for start in range(len(text) - n - 1, -1, -1):
            if text[start + n - 1] == tail[-1] and list(text[start:start + n]) == tail:
                return list(text[start + n: start + n + length])
    return []
