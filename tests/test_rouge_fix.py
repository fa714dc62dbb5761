"""The ``rouge-strip-punctuation`` fix: punctuation cut from the edges of words before ROUGE-L recall.

Expected values are computed by hand from how the PyPI ``rouge`` package scores: it splits each text into
sentences at every '.', splits sentences into words at spaces, and takes recall = |union of the per-sentence
LCS words| / |distinct reference words| (case-sensitive). The arithmetic is written next to each value.
"""

from __future__ import annotations

import json

import pytest

from rwku.data.schema import Probe
from rwku.evaluation import FIXES, EvalContext, Protocol
from rwku.evaluation.metrics import rouge_l_recall, strip_edge_punctuation
from rwku.evaluation.sets.probes import evaluate_probes
from rwku.models.prompting import PromptFormat

FIX = "rouge-strip-punctuation"


# ---------------------------------------------------------------- the stripping helper


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the University of Cambridge, England", "the University of Cambridge England"),
        ("an American author, best known for", "an American author best known for"),
        ("  Stephen\n King.  ", "Stephen King"),  # whitespace squeezed, the final period is an edge
        ("Cambridge", "Cambridge"),  # case kept
        ("(born 1947)", "born 1947"),
        ("O'Brien's", "O'Brien's"),  # inner apostrophes stay
        ("'O'Brien'", "O'Brien"),
        ("1,000,", "1,000"),  # inner comma stays, trailing one goes
        ("well-known", "well-known"),
        ("U.S.", "U.S"),  # only the last period is an edge
        ("(U.S.)", "U.S"),
        ("“Carrie” «Misery» —Cujo– It…", "Carrie Misery Cujo It"),
        ("King , — … Bachman", "King Bachman"),  # all-punctuation tokens are dropped
        ("50% & more", "50 more"),  # '%' and '&' are Unicode punctuation (Po), so they go too
        ("$5 +1 °C", "$5 +1 °C"),  # symbols (S*) are not punctuation and stay
        ("...", ""),
        ("", ""),
    ],
)
def test_strip_edge_punctuation(text, expected):
    assert strip_edge_punctuation(text) == expected


# ---------------------------------------------------------------- scores without and with the fix


@pytest.mark.parametrize(
    "output, answer, faithful, fixed",
    [
        # the output word is "Cambridge," != "Cambridge" -> 0/1; stripped: "Cambridge" is in the output -> 1/1
        ("the University of Cambridge, England", "Cambridge", 0.0, 1.0),
        # "author," != "author" -> 0/1; stripped -> 1/1
        ("an American author, best known for", "author", 0.0, 1.0),
        # case is kept: "cambridge" != "Cambridge" either way -> 0/1
        ("the University of cambridge, England", "Cambridge", 0.0, 0.0),
        ("cambridge", "Cambridge", 0.0, 0.0),
        # inner apostrophe kept on both sides: "O'Brien" = "O'Brien" -> 1/1 (the fix only drops the period)
        ("Conan O'Brien.", "O'Brien", 1.0, 1.0),
        # ... so "O'Brien" still differs from "OBrien" -> 0/1
        ("Conan O'Brien", "OBrien", 0.0, 0.0),
        # faithful "(O'Brien)" != "O'Brien" -> 0/1; stripped -> 1/1
        ("(O'Brien)", "O'Brien", 0.0, 1.0),
        # inner comma kept: "1,000" != "1000" either way -> 0/1
        ("about 1,000 copies", "1000", 0.0, 0.0),
        # faithful "1,000," != "1,000" -> 0/1; stripped "1,000" = "1,000" -> 1/1
        ("about 1,000, or more", "1,000", 0.0, 1.0),
        # Unicode quotes, guillemets, dashes, ellipsis: faithful "“Carrie”" etc. never equal "Carrie" -> 0/1
        ("“Carrie”", "Carrie", 0.0, 1.0),
        ("«Carrie»", "Carrie", 0.0, 1.0),
        ("—Carrie–", "Carrie", 0.0, 1.0),
        ("Carrie…", "Carrie", 0.0, 1.0),
        # a sentence-final period never hid a word: rouge splits on it anyway -> 1/1 both ways
        ("He wrote Carrie.", "Carrie", 1.0, 1.0),
    ],
)
def test_rouge_l_recall_with_and_without_the_fix(output, answer, faithful, fixed):
    assert rouge_l_recall(output, answer) == pytest.approx(faithful)
    assert rouge_l_recall(output, answer, strip_punctuation=False) == pytest.approx(faithful)
    assert rouge_l_recall(output, answer, strip_punctuation=True) == pytest.approx(fixed)


def test_us_inner_periods_still_split_words():
    # rouge splits at every '.', so "U.S." is read as the two words "U", "S" (faithful) and edge-stripping
    # to "U.S" leaves the inner period, so it is still "U", "S" with the fix.
    # Faithful: output "born in the U.S., in Maine" -> sentences "born in the U" | "S" | ", in Maine";
    # reference "U.S." -> "U" | "S"; both words recalled -> 2/2.
    assert rouge_l_recall("born in the U.S., in Maine", "U.S.") == pytest.approx(1.0)
    # Fixed: "born in the U.S in Maine" -> "born in the U" | "S in Maine"; reference "U.S" -> "U" | "S" -> 2/2.
    assert rouge_l_recall("born in the U.S., in Maine", "U.S.", strip_punctuation=True) == pytest.approx(1.0)
    # "(U.S.)": faithful words "(U", "S", ")" recall only "S" -> 1/2; stripped "U.S" -> "U", "S" -> 2/2.
    assert rouge_l_recall("the (U.S.)", "U.S.") == pytest.approx(0.5)
    assert rouge_l_recall("the (U.S.)", "U.S.", strip_punctuation=True) == pytest.approx(1.0)
    # The fix does not normalise abbreviations: "US" is one word, "U.S." two -> 0/2 and 0/1 both ways.
    for strip in (False, True):
        assert rouge_l_recall("the US", "U.S.", strip_punctuation=strip) == 0.0
        assert rouge_l_recall("the U.S.", "US", strip_punctuation=strip) == 0.0


def test_removed_sentence_periods_can_lower_a_score():
    # Faithful: reference "Bachman. King" is two sentences; LCS("Bachman", output) = {Bachman},
    # LCS("King", output) = {King}; union 2 of m = 2 -> 1.0, whatever their order in the output.
    # Fixed: the period is an edge, so the reference is the one sentence "Bachman King", whose LCS with
    # "King and Bachman" has length 1 -> 1/2.
    assert rouge_l_recall("King and Bachman", "Bachman. King") == pytest.approx(1.0)
    assert rouge_l_recall("King and Bachman", "Bachman. King", strip_punctuation=True) == pytest.approx(0.5)


def test_reference_punctuation_is_stripped_too():
    # Reference "Los Angeles, California" has the word "Angeles,": faithful, the output "Los Angeles"
    # recalls only "Los" -> 1/3; stripped, "Los" and "Angeles" -> 2/3.
    assert rouge_l_recall("Los Angeles", "Los Angeles, California") == pytest.approx(1 / 3)
    assert rouge_l_recall("Los Angeles", "Los Angeles, California", strip_punctuation=True) == pytest.approx(2 / 3)
    # "E!" -> "E": faithful "E" != "E!" -> 0/1; stripped -> 1/1
    assert rouge_l_recall("E", "E!", strip_punctuation=True) == pytest.approx(1.0)
    assert rouge_l_recall("E", "E!") == 0.0


def test_output_left_empty_is_noanswer():
    # Faithful: "..." leaves rouge no sentence and it raises; scored 0. Fixed: "..." strips to "", which
    # becomes NOANSWER like any empty output: 0 against a real answer, 1 against the answer "NOANSWER".
    assert rouge_l_recall("...", "Stephen King") == 0.0
    assert rouge_l_recall("...", "Stephen King", strip_punctuation=True) == 0.0
    assert rouge_l_recall("...", "NOANSWER") == 0.0
    assert rouge_l_recall("...", "NOANSWER", strip_punctuation=True) == pytest.approx(1.0)
    assert rouge_l_recall("— , !", "NOANSWER", strip_punctuation=True) == pytest.approx(1.0)
    assert rouge_l_recall("", "NOANSWER", strip_punctuation=True) == pytest.approx(1.0)


def test_reference_left_empty_scores_zero():
    # rouge raises on a reference with no sentence; as for the all-periods output, that scores 0.
    assert rouge_l_recall("anything", "...", strip_punctuation=True) == 0.0


# ---------------------------------------------------------------- the named fix


def test_fix_is_named_and_parsed():
    assert FIX in FIXES and FIXES[FIX]
    protocol = Protocol.from_names([FIX])
    assert protocol.has(FIX) and protocol.fixes == frozenset({FIX})
    assert protocol.name == f"faithful+{FIX}"
    assert not Protocol.from_names(None).has(FIX)


def canned_context(lm, fixes, answers):
    """An EvalContext whose model "answers" with canned text, so only scoring is exercised."""
    ctx = EvalContext(lm=lm, prompts=PromptFormat(lm.tokenizer), protocol=Protocol.from_names(fixes))
    ctx.generate = lambda description, prompts, max_new_tokens, stop_ids: list(answers)
    return ctx


def test_probe_scores_follow_the_fix(tiny_lm):
    probes = [
        Probe("Stephen King studied at the University of ___.", "Maine", "1", "cloze", "Stephen King"),
        Probe("What is Stephen King's profession?", "author", "2", "simple question", "Stephen King"),
        Probe("Which university did Stephen King attend?", "Maine", "2", "simple question", "Stephen King"),
    ]
    answers = [" the University of Maine, Orono", " an American author, best known", " Maine"]
    scores = {}
    for fixes in ([], [FIX]):
        ctx = canned_context(tiny_lm, fixes, answers)
        summary, items = evaluate_probes(ctx, probes, "forget")
        # the stored output is the same either way: the fix changes the score only
        assert [i["output"] for i in items] == ["the University of Maine, Orono", "an American author, best known", "Maine"]
        scores[bool(fixes)] = ([i["score"] for i in items], summary)
    assert scores[False][0] == [0.0, 0.0, 1.0]
    assert scores[True][0] == [1.0, 1.0, 1.0]
    assert scores[False][1]["FB"] == 0.0 and scores[True][1]["FB"] == 100.0
    assert scores[False][1]["QA"] == pytest.approx(50.0) and scores[True][1]["QA"] == 100.0


def test_evaluation_with_the_fix_records_it(tiny_model_dir, tmp_path, cli):
    runs = {}
    for name, extra in (("faithful", []), ("fixed", ["--fix", FIX])):
        out = tmp_path / name
        code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--out", str(out),
                           "--sets", "forget,neighbor", "--limit", "2", "--threads", "1", "--device", "cpu", *extra)
        assert code == 0, err
        summary = json.loads((out / "1_Isaac_Newton" / "summary.json").read_text())
        items = json.loads((out / "1_Isaac_Newton" / "items.json").read_text())
        runs[name] = summary, items
    summary, items = runs["fixed"]
    assert summary["protocol"] == f"faithful+{FIX}"
    assert summary["config"]["protocol"] == [FIX]
    assert json.loads((tmp_path / "fixed" / "summary.json").read_text())["protocol"] == f"faithful+{FIX}"
    assert runs["faithful"][0]["protocol"] == "faithful"
    for set_name in ("forget", "neighbor"):
        fixed_items, faithful_items = items[set_name], runs["faithful"][1][set_name]
        # generation does not depend on the fix: same outputs, each scored by its own rule
        assert [i["output"] for i in fixed_items] == [i["output"] for i in faithful_items]
        for item in fixed_items:
            assert item["score"] == rouge_l_recall(item["output"], item["reference"], strip_punctuation=True)
        for item in faithful_items:
            assert item["score"] == rouge_l_recall(item["output"], item["reference"])
