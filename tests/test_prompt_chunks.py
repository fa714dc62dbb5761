"""Prompt chunks under invariant kernels: where a row's chunks end (its own newline tokens, a function of its own
tokens only), and that a row's logits and cache are the same bits whether its leading chunks were copied from a
row sharing its prefix or computed by itself."""

from __future__ import annotations

import torch

from rwku.models.backends import make_backend
from rwku.models.decoding.cache import PreallocatedLayer
from rwku.models.decoding.prefill import ChunkRule, LineEnds, RowPrefiller, chunk_ends

N, B = 0, 1  # token 0 ends a line, token 1 ends a line with a blank line (as "\n\n") in the pure tests
LINES = LineEnds(newline=frozenset({N, B}), blank=frozenset({B}))
RULE = ChunkRule(first=2, blank_line=3, newline=6, longest=9)


def test_a_chunk_ends_at_a_line_end_once_as_long_as_its_kind_asks_and_never_grows_past_the_longest():
    row = [5, 0, 5, 0, 0, 5, 5, 0, 5, 5, 5, 0, 5, 1, 5, 1] + [5] * 14 + [0, 5]
    # the first chunk ends at the first line end after 2 tokens (2); two newlines make a blank line, which needs 3
    # tokens (5), a newline 6 (so not after 7 but after 11: 12), a blank-line token 3 (not 13 but 15: 16); then
    # 9 tokens at most (25), and a newline after 6 more (31)
    assert chunk_ends(row, first_needed=len(row) - 1, line_ends=LINES, rule=RULE) == [2, 5, 12, 16, 25, 31]  # the last right before position 31
    assert chunk_ends(row, first_needed=30, line_ends=LINES, rule=RULE) == [2, 5, 12, 16, 25]  # nothing past the first needed position
    assert chunk_ends(row, first_needed=len(row) - 1, line_ends=LineEnds(), rule=RULE) == [9, 18, 27]  # no line ends: fixed blocks of the longest
    assert chunk_ends(row, first_needed=0, line_ends=LINES, rule=RULE) == []


def test_rows_sharing_a_prefix_get_the_same_chunks_inside_it():
    torch.manual_seed(0)
    prefix = torch.randint(0, 6, (90,)).tolist()  # a line end in about every third token
    for tail in range(1, 30):
        a, b = prefix + torch.randint(0, 6, (tail,)).tolist(), prefix + [7] * 40
        ends_a = chunk_ends(a, first_needed=len(a) - 1, line_ends=LINES, rule=RULE)
        ends_b = chunk_ends(b, first_needed=len(b) - 1, line_ends=LINES, rule=RULE)
        assert [e for e in ends_a if e <= len(prefix)] == [e for e in ends_b if e <= len(prefix)]


def test_line_ends_are_the_tokens_whose_text_ends_in_a_newline(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    lines = LineEnds.of(tokenizer)
    assert lines.newline and all(tokenizer.decode([i]).endswith("\n") for i in lines.newline)
    assert lines.blank <= lines.newline and all(tokenizer.decode([i]).endswith("\n\n") for i in lines.blank)
    encoded = tokenizer("Question: Who wrote it?\nAnswer: The author.\n\nQuestion:", add_special_tokens=False)["input_ids"]
    newlines = [token for token in encoded if token in lines.newline]
    assert len(newlines) >= 2 and newlines == [token for token in encoded if tokenizer.decode([token]).endswith("\n")]
    assert make_backend(tiny_lm).row_prefiller().line_ends == lines


class Fed:
    """Counts a model's forward passes and the token positions fed to them."""

    def __init__(self, model):
        self.tokens = self.passes = 0
        self.hook = model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        self.tokens += kwargs["input_ids"].numel()
        self.passes += 1


def assert_same_bits(a, b):
    assert torch.equal(a.logits, b.logits)
    for layer_a, layer_b in zip(a.cache.layers, b.cache.layers):
        assert isinstance(layer_a, PreallocatedLayer)
        assert torch.equal(layer_a.keys, layer_b.keys) and torch.equal(layer_a.values, layer_b.values)


def test_a_row_gets_the_same_logits_and_cache_after_a_row_sharing_its_chunks_as_alone(tiny_lm):
    model, tokenizer = tiny_lm.model, tiny_lm.tokenizer
    lines, rule = LineEnds.of(tokenizer), ChunkRule(first=8, blank_line=8, newline=64, longest=64)
    demos = "".join(f"Question: Who wrote book {n}?\nAnswer: The author wrote it.\n\n" for n in range(6))
    first, second = (tokenizer(demos + f"Question: {q}?\nAnswer:", add_special_tokens=False)["input_ids"]
                     for q in ("Is Stephen King an author", "Was Isaac Newton a physicist"))
    ends = chunk_ends(second, first_needed=len(second) - 3, line_ends=lines, rule=rule)
    assert len(ends) > 3 and all(second[end - 1] in lines.newline for end in ends)  # every chunk ends a line

    alone = RowPrefiller(model, lines, rule)(second, keep=3, needed_from_end=2, extra=5)
    prefiller = RowPrefiller(model, lines, rule)
    prefiller(first, keep=3, needed_from_end=2, extra=5)
    counter = Fed(model)
    after = prefiller(second, keep=3, needed_from_end=2, extra=5)
    counter.hook.remove()
    shared = next(n for n, (a, b) in enumerate(zip(first, second)) if a != b)
    copied = max(end for end in ends if end <= shared)
    assert counter.tokens == len(second) - copied and copied > len(second) // 2
    assert_same_bits(after, alone)
    assert after.cache.layers[0].key_buffer.shape[-2] == len(second) + 5  # room for the generated tokens
    whole = model(input_ids=torch.tensor([second])).logits[:, -3:].float()
    assert torch.allclose(alone.logits, whole, atol=1e-4)  # chunks change float noise only

    # a row that differs from the one before it just inside a chunk copies only the chunks before that one
    edited, changed = list(second), ends[2] - 3
    edited[changed] = next(t for t in second if t not in lines.newline and t != second[changed])
    assert chunk_ends(edited, first_needed=len(edited) - 3, line_ends=lines, rule=rule) == ends
    after_edit = prefiller(edited, keep=3, needed_from_end=2, extra=5)
    assert_same_bits(after_edit, RowPrefiller(model, lines, rule)(edited, keep=3, needed_from_end=2, extra=5))


def test_the_prefill_benchmark_counts_the_tokens_and_passes_the_prefiller_saves(tiny_lm):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_prefill.py"
    spec = importlib.util.spec_from_file_location("bench_prefill", path)
    bench = sys.modules["bench_prefill"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, tokenizer = tiny_lm.model, tiny_lm.tokenizer
    lines, rule = LineEnds.of(tokenizer), ChunkRule(first=8, blank_line=8, newline=64, longest=64)
    demos = "".join(f"Question: Who wrote book {n}?\nAnswer: The author wrote it.\n\n" for n in range(4))
    prompts = [demos + f"Question: {q}?\nAnswer:" for q in ("Is Stephen King an author", "Was Isaac Newton a physicist")]
    prompts.append("Please briefly answer the following question.\nAnswer:")
    rows = bench.engine_order([tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts])
    prefiller, counter = RowPrefiller(model, lines, rule), Fed(model)
    for row in rows:
        prefiller(row, keep=1, needed_from_end=0)
    counter.hook.remove()
    reused, passes = bench.reuse(rows, rule, lines)
    assert reused > 0 and counter.tokens == sum(len(r) for r in rows) - reused and counter.passes == passes
    assert bench.ideal_tokens(rows) >= reused
