"""Fast decoding under invariant kernels: a row's prompt in chunks with earlier rows' chunks reused (the same
numbers whatever came before), greedy passes of a fixed number of slots from any rows (a slot's bits the same
wherever it sits), and prompt-lookup drafting in free slots (the very tokens of undrafted decoding)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rwku.data import RwkuData
from rwku.errors import RwkuError
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.models.backends import make_backend
from rwku.models.decoding.drafting import DRAFT_TOKENS, lookup_draft
from rwku.models.decoding.generate import generate_tokens
from rwku.models.decoding.prefill import ChunkRule, RowPrefiller
from rwku.models.loading import load_model
from rwku.models.prompting import PromptFormat
from rwku.models.scoring import next_token_probs, score_tokens


@pytest.fixture(scope="module")
def rows():
    """Prompts that share a long prefix (as few-shot sets do), then differ; and one that shares nothing."""
    torch.manual_seed(1)
    prefix = torch.randint(3, 300, (45,)).tolist()
    return [prefix + torch.randint(3, 300, (n,)).tolist() for n in (7, 12, 3)] + [torch.randint(3, 300, (30,)).tolist()]


class Counting:
    """Counts the forward passes of a model and the token positions they are fed."""

    def __init__(self, model):
        self.fed = self.passes = 0
        self.hook = model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        self.fed += kwargs["input_ids"].numel()
        self.passes += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.hook.remove()


def test_a_row_gets_the_same_bits_alone_as_after_rows_sharing_its_prefix(tiny_lm, rows):
    model = tiny_lm.model
    alone = [RowPrefiller(model, rule=ChunkRule(longest=8))(row, keep=3, needed_from_end=2).logits for row in rows]
    shared = RowPrefiller(model, rule=ChunkRule(longest=8))
    with Counting(model) as counting:
        together = [shared(row, keep=3, needed_from_end=2).logits for row in rows]
    for a, b in zip(alone, together):
        assert torch.equal(a, b)
    assert counting.fed < sum(len(r) for r in rows) - 60  # rows 2 and 3 reused five blocks of the 45 shared tokens
    whole = [model(input_ids=torch.tensor([row])).logits[:, -3:].float() for row in rows]
    for a, w in zip(alone, whole):  # blocks change float noise only
        assert torch.allclose(a, w, atol=1e-4)


def test_row_prefilled_requests_match_batched_ones_in_any_order(tiny_lm, rows):
    model, pad = tiny_lm.model, tiny_lm.tokenizer.pad_token_id
    batched = generate_tokens(model, rows, max_new_tokens=12, stop_ids=[2], pad_id=pad, batch_size=4)
    by_row = generate_tokens(model, rows, max_new_tokens=12, stop_ids=[2], pad_id=pad, batch_size=1,
                             prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))
    assert by_row == batched
    reversed_rows = generate_tokens(model, rows[::-1], max_new_tokens=12, stop_ids=[2], pad_id=pad, batch_size=1,
                                    prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))
    assert reversed_rows[::-1] == by_row
    scored = score_tokens(model, rows, [5] * len(rows), pad_id=pad, batch_size=1, vocab_moments=True,
                          prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))
    alone = [score_tokens(model, [row], [5], pad_id=pad, batch_size=1, vocab_moments=True,
                          prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))[0] for row in rows]
    assert scored == alone
    probs = next_token_probs(model, rows, [5, 6, 7], pad_id=pad, batch_size=1, prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))
    assert probs == [next_token_probs(model, [row], [5, 6, 7], pad_id=pad, batch_size=1,
                                      prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))[0] for row in rows]


def test_lookup_draft_continues_the_latest_earlier_occurrence_of_the_longest_matching_tail():
    text = [1, 2, 3, 9, 9, 5, 2, 3, 7, 8, 4, 2, 3]
    assert lookup_draft(text, length=2) == [7, 8]  # "2 3" last seen before the tail at positions 6-7
    assert lookup_draft(text, length=2, max_ngram=1) == [7, 8]
    assert lookup_draft([4, 5, 6], length=3) == []
    assert lookup_draft([5, 1, 2, 5], length=4) == [1, 2, 5]


def assert_slots_independent(model, rows, targets=None):
    """The property invariant decoding rests on: a position's logits and its key/value are a function of its own
    row, whatever else the fixed-shape pass holds (padding, other rows, drafts) and at whichever slot it sits."""
    from rwku.models.decoding.slots import DECODE_SLOTS, Slot, attention_by_slot, start_row

    def fresh(index):
        prompt = rows[index]
        state = RowPrefiller(model, rule=ChunkRule(longest=8))(prompt, keep=1, needed_from_end=0, extra=8)
        return start_row(index, prompt, state, first=int(state.logits[0, -1].argmax()), stops=set(), max_new_tokens=8)

    def logits_of(slots, row):
        slots = slots + [Slot(None, 0, 0)] * (DECODE_SLOTS - len(slots))
        with attention_by_slot(model), torch.no_grad():
            out = model(input_ids=torch.tensor([[s.token for s in slots]]), use_cache=False,
                        position_ids=torch.tensor([[s.position for s in slots]]), rwku_slots=slots)
        j = next(j for j, s in enumerate(slots) if s.row is row and s.position == row.length)
        return out.logits[0, j], row.keys[0][:, :, row.length].clone()

    for target in targets if targets is not None else range(len(rows)):
        alone_row = fresh(target)
        alone = logits_of([Slot(alone_row, alone_row.length, alone_row.text[-1])], alone_row)
        for place in (0, 3):
            others = [fresh(i) for i in range(len(rows)) if i != target]
            crowd = [Slot(r, r.length, r.text[-1]) for r in others] + [Slot(others[0], others[0].length + 1 + k, 7 + k) for k in range(3)]
            row = fresh(target)
            crowd[place:place] = [Slot(row, row.length, row.text[-1]), Slot(row, row.length + 1, 9)]
            crowded = logits_of(crowd, row)
            assert torch.equal(alone[0], crowded[0]) and torch.equal(alone[1], crowded[1]), (target, place)


def test_a_slot_computes_the_same_bits_wherever_it_sits_and_whatever_shares_its_pass(tiny_lm, rows):
    assert_slots_independent(tiny_lm.model, rows)


@pytest.mark.integration
def test_a_slot_of_the_default_model_computes_the_same_bits_in_any_company(rows):
    torch.set_num_threads(1)
    lm = load_model("smollm2-135m", device="cpu")
    torch.manual_seed(4)
    assert_slots_independent(lm.model, rows + [torch.randint(100, 40000, (300,)).tolist()], targets=(1, 4))


def test_drafting_keeps_the_very_tokens_of_undrafted_decoding_in_fewer_passes(tiny_lm, rows):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = tiny_lm.model.config.to_dict() | {"initializer_range": 0.02}  # small weights: text that repeats itself
    model = LlamaForCausalLM(type(tiny_lm.model.config).from_dict(config)).eval()
    pad = tiny_lm.tokenizer.pad_token_id

    def decode(prompts, draft):
        with Counting(model) as counting:
            tokens = generate_tokens(model, prompts, max_new_tokens=40, stop_ids=[2], pad_id=pad, batch_size=1,
                                     prefiller=RowPrefiller(model), draft=draft)
        return tokens, counting.passes

    for prompts in (rows, rows[:1]):
        (plain, plain_passes), (drafted, drafted_passes) = decode(prompts, 0), decode(prompts, 6)
        assert drafted == plain and max(map(len, plain)) == 40
        assert drafted_passes < 0.75 * plain_passes  # drafts were accepted


def test_rows_join_the_passes_as_others_finish_with_the_same_tokens_as_alone(tiny_lm, rows, monkeypatch):
    """More prompts than slots: a finished row's place goes to the next prompt, and every prompt still gets the
    tokens it gets decoded alone, at any token limit and stop set."""
    from rwku.models.decoding import slots

    monkeypatch.setattr(slots, "DECODE_SLOTS", 4)
    model, pad = tiny_lm.model, tiny_lm.tokenizer.pad_token_id
    torch.manual_seed(3)
    prompts = rows + [torch.randint(3, 300, (n,)).tolist() for n in (5, 9, 14, 20, 33, 4)]
    finished = []
    together = generate_tokens(model, prompts, max_new_tokens=15, stop_ids=[2, 17, 40], pad_id=pad, batch_size=1,
                               prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)), on_batch=finished.append)
    alone = [generate_tokens(model, [p], max_new_tokens=15, stop_ids=[2, 17, 40], pad_id=pad, batch_size=1,
                             prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))[0] for p in prompts]
    assert together == alone and sum(finished) == len(prompts)
    assert len({len(tokens) for tokens in together}) > 1  # rows did finish at different times
    batched = generate_tokens(model, prompts, max_new_tokens=15, stop_ids=[2, 17, 40], pad_id=pad, batch_size=4)
    assert together == batched  # and the tiny model's greedy tokens are those of ordinary batched decoding


def test_sampled_rows_decode_in_slot_passes_with_the_draws_they_get_alone(tiny_lm, rows, monkeypatch):
    """Corpus sampling under invariant kernels: each row draws once per token from its own generator, so in slot
    passes with rows joining as others finish it gets exactly the tokens it gets alone."""
    from rwku.models.decoding import slots
    from rwku.models.decoding.choice import nucleus_choice

    monkeypatch.setattr(slots, "DECODE_SLOTS", 4)
    model, pad = tiny_lm.model, tiny_lm.tokenizer.pad_token_id
    prompts = rows + rows[:3]  # repeated prompts, as a corpus samples one prompt many times

    def sample(indices):
        generators = [torch.Generator().manual_seed(100 + i) for i in indices]
        with Counting(model) as counting:
            tokens = generate_tokens(model, [prompts[i] for i in indices], max_new_tokens=12, stop_ids=[2, 17], pad_id=pad,
                                     batch_size=1, choose=nucleus_choice(generators, 1.0, 0.9),
                                     prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))
        return tokens, counting.passes

    together, passes = sample(range(len(prompts)))
    assert together == [sample([i])[0][0] for i in range(len(prompts))]
    assert len(set(map(tuple, together))) == len(prompts)  # repeated prompts drew different texts
    assert passes < sum(len(tokens) for tokens in together)  # rows shared passes


def test_drafting_through_the_backend_is_the_same_at_any_batch_size_and_with_or_without_drafts(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    data = RwkuData.open(["demo"])
    sets = ("forget", "neighbor", "utility")
    target = load_target(data, data.select("1")[0], sets, 3)
    prompts = PromptFormat(lm.tokenizer)
    runs = [evaluate_target(EvalContext(lm=lm, prompts=prompts, backend=make_backend(lm, batch_size=size, draft=draft)),
                            target, sets) for draft, size in ((0, 4), (None, 1), (8, 32))]
    assert make_backend(lm).draft == DRAFT_TOKENS and make_backend(dataclasses.replace(lm, kernels="fast")).draft == 0
    assert runs[0].items == runs[1].items == runs[2].items


def test_drafting_is_refused_where_rows_share_a_pass_or_the_backend_does_not_draft(tiny_model_dir):
    fast = load_model(str(tiny_model_dir), device="cpu", dtype="float32", kernels="fast")
    with pytest.raises(RwkuError, match="use --kernels invariant"):
        make_backend(fast, draft=4)
    invariant = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    with pytest.raises(RwkuError, match="no prompt-lookup drafting"):
        make_backend(invariant, "official", draft=4)


def test_the_8b_benchmark_runs_its_static_cache_path_on_a_tiny_shape_and_agrees_with_eager():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench = sys.modules["bench_gpu"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = bench.build_model(bench.TINY, torch.float32, torch.device("cpu"))
    timing = bench.measure(model, batch=2, context=16, steps=4, warmup=1, bandwidth=1e10, compiled=False)
    assert timing.eager_ms > 0 and timing.fast_ms > 0 and timing.largest_logit_difference < 1e-4
    weights = sum(p.numel() for p in model.parameters()) * 4
    kv = 2 * 2 * 2 * 16 * 4 * 2 * 20  # layers x (K, V) x KV heads x head size x bytes x rows x tokens
    assert timing.floor_ms == pytest.approx((weights + kv) / 1e10 * 1e3)
    assert "| 2 |" in bench.table([timing], "static cache")


def test_models_with_sliding_window_layers_decode_row_by_row_without_merging_caches(rows):
    from transformers import MistralConfig, MistralForCausalLM

    from rwku.models.decoding.cache import caches_merge

    torch.manual_seed(0)
    config = MistralConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, sliding_window=16, initializer_range=0.5)
    model = MistralForCausalLM(config).eval()
    assert not caches_merge(model)
    by_row = generate_tokens(model, rows, max_new_tokens=6, stop_ids=[], pad_id=2, batch_size=1, prefiller=RowPrefiller(model, rule=ChunkRule(longest=8)))
    assert by_row == [generate_tokens(model, [row], max_new_tokens=6, stop_ids=[], pad_id=2, batch_size=1)[0] for row in rows]
