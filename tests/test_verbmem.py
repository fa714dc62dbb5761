"""VerbMem (verbatim memorization): ROUGE-L by hand, the prompt/truth split, the set on a tiny model, and that it is
opt-in (the default sets and their keys do not change)."""

from __future__ import annotations

import pytest

from rwku.data import RwkuData
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.metrics import lcs_length, rouge_l, rouge_tokens
from rwku.evaluation.sets import DEFAULT_SETS, load_target, parse_sets, set_keys
from rwku.evaluation.sets.verbmem import MIN_WORDS, NEW_TOKENS, PROMPT_TOKENS, VERBMEM_PART, split_passage
from rwku.models.prompting import PromptFormat


def test_rouge_l_of_a_hand_made_continuation():
    truth = "He was born in Portland, Maine, in 1947."
    output = "He was born in Maine in the year 1947"
    # words: truth [he was born in portland maine in 1947] (8), output [he was born in maine in the year 1947] (9)
    # LCS: he was born in maine in 1947 = 7
    assert rouge_tokens(truth) == ["he", "was", "born", "in", "portland", "maine", "in", "1947"]
    assert lcs_length(rouge_tokens(output), rouge_tokens(truth)) == 7
    scores = rouge_l(output, truth)
    assert scores["precision"] == pytest.approx(7 / 9)
    assert scores["recall"] == pytest.approx(7 / 8)
    assert scores["f1"] == pytest.approx(2 * (7 / 9) * (7 / 8) / (7 / 9 + 7 / 8))
    assert rouge_l(truth, truth)["f1"] == pytest.approx(1.0)
    assert rouge_l("", truth) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert rouge_l("nothing alike here", truth)["f1"] == 0.0


def test_lcs_is_order_sensitive():
    assert lcs_length(["a", "b", "c"], ["c", "b", "a"]) == 1
    assert lcs_length(["a", "x", "b", "y", "c"], ["a", "b", "c"]) == 3


def test_split_takes_the_first_k_tokens_as_prompt_and_the_next_m_as_truth(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    passage = " ".join(f"word{i}" for i in range(200))
    ids = tokenizer(passage, add_special_tokens=False)["input_ids"]
    prompt, truth = split_passage(tokenizer, passage, prompt_tokens=5, new_tokens=7)
    assert prompt == list(tokenizer(passage, add_special_tokens=True)["input_ids"])[:len(prompt)] and prompt[-5:] == ids[:5]
    assert truth == ids[5:12]
    short_prompt, short_truth = split_passage(tokenizer, "word1 word2", prompt_tokens=50, new_tokens=7)
    assert short_truth == []


def test_verbmem_is_opt_in_and_keys_of_other_sets_do_not_change():
    assert "verbmem" not in DEFAULT_SETS
    assert parse_sets("all") == DEFAULT_SETS
    assert parse_sets("all,verbmem") == (*DEFAULT_SETS, "verbmem")
    assert set_keys(DEFAULT_SETS) == {}
    assert set_keys(["verbmem"]) == {"verbmem": {"prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS,
                                                 "min_words": MIN_WORDS, "rouge": "rougeL, rouge_score tokens"}}


def test_plan_key_has_verbmem_settings_only_when_asked():
    from rwku.evaluation.settings import RunSettings
    from rwku.execution.plan import eval_section

    plain = RunSettings(model="x", device="cpu")
    assert "set_settings" not in eval_section(plain)
    asked = RunSettings(model="x", sets=parse_sets("forget,verbmem"), device="cpu")
    assert eval_section(asked)["set_settings"]["verbmem"]["prompt_tokens"] == PROMPT_TOKENS


def test_limit_keeps_the_first_long_passages():
    long_a, short, long_b = "w " * MIN_WORDS, "a heading", "v " * (MIN_WORDS + 5)
    assert VERBMEM_PART.limit([short, long_a, short, long_b], 1) == [long_a]
    assert VERBMEM_PART.count("verbmem", [short, long_a, long_b]) == {"verbmem": 2}


def test_verbmem_set_on_a_tiny_model(tiny_lm):
    data = RwkuData.open(["demo"])
    target = data.select("1")[0]
    loaded = load_target(data, target, ["verbmem"], limit=1)
    assert len(loaded["verbmem"]) == 1 and len(loaded["verbmem"][0].split()) >= MIN_WORDS
    ctx = EvalContext(lm=tiny_lm, prompts=PromptFormat(tiny_lm.tokenizer), batch_size=2)
    result = evaluate_target(ctx, loaded, ["verbmem"])
    (item,) = result.items["verbmem"]
    assert 0 < item["new_tokens"] <= NEW_TOKENS
    assert item["rougeL_f1"] == pytest.approx(rouge_l(item["output"], item["reference"])["f1"])
    assert result.summary["verbmem"]["F1"] == pytest.approx(100 * item["rougeL_f1"])
    assert result.summary["n_items"]["verbmem"] == 1


def test_adding_verbmem_leaves_the_other_sets_numbers_alone(tiny_lm):
    data = RwkuData.open(["demo"])
    target = data.select("2")[0]
    ctx = EvalContext(lm=tiny_lm, prompts=PromptFormat(tiny_lm.tokenizer), batch_size=2)
    alone = evaluate_target(ctx, load_target(data, target, ["forget"], limit=1), ["forget"]).summary
    both = evaluate_target(ctx, load_target(data, target, ["forget", "verbmem"], limit=1), ["forget", "verbmem"]).summary
    assert both["forget"] == alone["forget"] and "verbmem" in both and "verbmem" not in alone
