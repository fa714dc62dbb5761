"""Prompt chunks under invariant kernels: where a row's chunks end (its own newline tokens, a function of its own
tokens only), and that a row's logits and cache are the same bits whether its leading chunks were copied from a
row sharing its prefix or computed by itself."""

from __future__ import annotations

import torch

from rwku.models.backends import make_backend
from rwku.models.batching import PreallocatedLayer, RowPrefiller, chunk_ends, newline_token_ids

NL = frozenset({0})  # token 0 stands for a newline in the pure tests


def test_chunks_end_after_newlines_once_long_enough_and_are_split_at_the_maximum():
    row = [5, 0, 5, 5, 5, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0, 5, 5]
    # the newline at 1 comes too early (min 3), the one at 5 ends a chunk, 8 tokens later one is split off,
    # then the newline at 18 ends the next one
    assert chunk_ends(row, len(row) - 1, NL, min_chunk=3, max_chunk=8) == [6, 14, 19]
    assert chunk_ends(row, 18, NL, min_chunk=3, max_chunk=8) == [6, 14]  # nothing past the first needed position
    assert chunk_ends(row, 19, NL, min_chunk=3, max_chunk=8) == [6, 14, 19]  # a chunk may end right before it
    assert chunk_ends(row, len(row) - 1, frozenset(), min_chunk=3, max_chunk=8) == [8, 16]  # no newlines: fixed blocks
    assert chunk_ends(row, 0, NL, min_chunk=3, max_chunk=8) == []


def test_rows_sharing_a_prefix_get_the_same_chunks_inside_it():
    torch.manual_seed(0)
    prefix = torch.randint(0, 4, (90,)).tolist()  # a newline in about every fourth token
    for tail in range(1, 30):
        a, b = prefix + torch.randint(0, 4, (tail,)).tolist(), prefix + [7] * 40
        ends_a = chunk_ends(a, len(a) - 1, NL, 4, 16)
        ends_b = chunk_ends(b, len(b) - 1, NL, 4, 16)
        assert [e for e in ends_a if e <= len(prefix)] == [e for e in ends_b if e <= len(prefix)]


def test_newline_tokens_are_those_whose_text_ends_in_a_newline(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    ids = newline_token_ids(tokenizer)
    assert ids and all(tokenizer.decode([i]).endswith("\n") for i in ids)
    encoded = tokenizer("Question: Who wrote it?\nAnswer: The author.\n\nQuestion:", add_special_tokens=False)["input_ids"]
    newlines = [token for token in encoded if token in ids]
    assert len(newlines) >= 2 and newlines == [token for token in encoded if tokenizer.decode([token]).endswith("\n")]
    assert make_backend(tiny_lm).row_prefiller().boundary_ids == ids


class Fed:
    """Counts the token positions fed to a model's forward passes."""

    def __init__(self, model):
        self.tokens = 0
        self.hook = model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        self.tokens += kwargs["input_ids"].numel()


def cache_tensors(prefill):
    return [(layer.keys, layer.values) for layer in prefill.cache.layers if isinstance(layer, PreallocatedLayer)]


def test_a_row_gets_the_same_logits_and_cache_after_a_row_sharing_its_chunks_as_alone(tiny_lm):
    model, tokenizer = tiny_lm.model, tiny_lm.tokenizer
    ids = newline_token_ids(tokenizer)
    demos = "".join(f"Question: Who wrote book {n}?\nAnswer: The author wrote it.\n\n" for n in range(6))
    first, second = (tokenizer(demos + f"Question: {q}?\nAnswer:", add_special_tokens=False)["input_ids"]
                     for q in ("Is Stephen King an author", "Was Isaac Newton a physicist"))
    ends = chunk_ends(second, len(second) - 3, ids, 8, 64)
    assert len(ends) > 3 and all(second[end - 1] in ids for end in ends)  # every chunk ends at a newline

    alone = RowPrefiller(model, ids, 8, 64)(second, keep=3, needed_from_end=2, extra=5)
    prefiller = RowPrefiller(model, ids, 8, 64)
    prefiller(first, keep=3, needed_from_end=2, extra=5)
    counter = Fed(model)
    after = prefiller(second, keep=3, needed_from_end=2, extra=5)
    counter.hook.remove()

    shared = next(n for n, (a, b) in enumerate(zip(first, second)) if a != b)
    copied = max(end for end in ends if end <= shared)
    assert counter.tokens == len(second) - copied and copied > len(second) // 2
    assert torch.equal(after.logits, alone.logits)
    for (keys_after, values_after), (keys_alone, values_alone) in zip(cache_tensors(after), cache_tensors(alone)):
        assert torch.equal(keys_after, keys_alone) and torch.equal(values_after, values_alone)
    assert after.cache.layers[0].key_buffer.shape[-2] == len(second) + 5  # room for the generated tokens
    whole = model(input_ids=torch.tensor([second])).logits[:, -3:].float()
    assert torch.allclose(alone.logits, whole, atol=1e-4)  # chunks change float noise only
