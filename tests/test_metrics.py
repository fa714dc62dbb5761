"""Every scoring function of the RWKU protocol against values computed by hand.

The arithmetic behind each expected value is written next to it. Two tests also compare with the reference
implementations the protocol names (the PyPI ``rouge`` package; Punkt + NLTK's word tokenizer) on real RWKU
text when ``RWKU_SHARED_DATA`` points at ``../shared/rwku-data``; they are skipped otherwise.
"""

from __future__ import annotations

import json
import lzma
import math
import re
import zlib
from pathlib import Path

import pytest

from rwku.errors import RwkuError
from rwku.evaluation.metrics import (
    bbh_exact_match,
    exact_match,
    extract_bbh_answer,
    fluency_entropy,
    max_f1,
    mia_attack_scores,
    ngram_entropy,
    normalize_answer,
    roc_auc,
    rouge_l_recall,
    token_f1,
    word_tokenize,
)
from rwku.evaluation.protocol import FIXES, MIA_RATIOS, NO_ANSWER, Protocol

PROBE_KINDS = ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2")




# ---------------------------------------------------------------- ROUGE-L recall


@pytest.mark.parametrize(
    "output, answer, expected",
    [
        # identical: LCS = all reference words -> 2/2
        ("Richard Bachman", "Richard Bachman", 1.0),
        ("Maine", "Maine", 1.0),
        # output tokens {the, answer, is, Richard, Bachman}; LCS with [Richard, Bachman] = 2; m = 2 -> 2/2
        ("the answer is Richard Bachman", "Richard Bachman", 1.0),
        # LCS([Richard], [Richard, Bachman]) = 1; m = 2 -> 1/2
        ("Richard", "Richard Bachman", 0.5),
        # LCS = [Bachman]; m = 2 -> 0.5 (order matters: "Bachman Richard" shares only one in-order word)
        ("Bachman Richard", "Richard Bachman", 0.5),
        # case-sensitive: "author" != "Author" -> 0/1
        ("author", "Author", 0.0),
        # punctuation stays on whitespace tokens: the output token is "author," -> no match -> 0/1
        ("Stephen King is an American author, best known", "author", 0.0),
        # ... while the same word without the comma matches: 1/1
        ("Stephen King is an American author best known", "author", 1.0),
        # no stemming: "authors" != "author"
        ("authors", "author", 0.0),
        # reference words are a *set* (rouge's exclusive Ngrams): m = |{Sing}| = 1, LCS union {Sing} -> 1/1
        ("Sing", "Sing Sing", 1.0),
        # three reference words, two recalled in order: LCS([was, born, in, Portland], [Portland, Maine]) = 1
        # -> 1/2 ("Maine" missing)
        ("was born in Portland", "Portland Maine", 0.5),
    ],
)
def test_rouge_l_recall_hand_values(output, answer, expected):
    assert rouge_l_recall(output, answer) == pytest.approx(expected)


def test_rouge_l_recall_summary_level_union_over_sentences():
    # Output sentences (split on '.'): c1 = "the quick red cat sat", c2 = "the brown sat dog jumps".
    # Reference r = "the quick brown fox jumps" (one sentence, m = 5 distinct words).
    # LCS(r, c1) = [the, quick]; LCS(r, c2) = [the, brown, jumps]; union = {the, quick, brown, jumps} = 4
    # -> recall 4/5 = 0.8 (a single LCS over either sentence would give at most 3/5).
    assert rouge_l_recall("the quick red cat sat. the brown sat dog jumps", "the quick brown fox jumps") == pytest.approx(0.8)
    # The split removes the periods: "King wrote as Richard. Bachman was his pen name" -> sentences
    # [King wrote as Richard] and [Bachman was his pen name]; LCS with [Richard, Bachman] is {Richard} and
    # {Bachman}; union 2, m = 2 -> 1.0. (Without the split, "Richard." would not match "Richard": 1/2.)
    assert rouge_l_recall("King wrote as Richard. Bachman was his pen name", "Richard Bachman") == pytest.approx(1.0)
    # The reference is split too: "Bachman. King" -> sentences [Bachman], [King], m = 2; the single output
    # sentence "King and Bachman" contains each -> union {Bachman, King} = 2 -> 2/2, although in one
    # sequence the order is reversed.
    assert rouge_l_recall("King and Bachman", "Bachman. King") == pytest.approx(1.0)
    # Answer with an initial: "Michael J. Fox" -> reference sentences [Michael J], [Fox] (m = 3);
    # output "Michael Fox" -> LCS with [Michael, J] = {Michael}, with [Fox] = {Fox} -> 2/3.
    assert rouge_l_recall("Michael Fox", "Michael J. Fox") == pytest.approx(2 / 3)


def test_rouge_l_recall_empty_output_is_noanswer():
    # An empty (or blank) output is scored as the text "NOANSWER".
    assert NO_ANSWER == "NOANSWER"
    assert rouge_l_recall("", "NOANSWER") == pytest.approx(1.0)
    assert rouge_l_recall("   \n ", "NOANSWER") == pytest.approx(1.0)
    assert rouge_l_recall("", "Stephen King") == 0.0
    # "NOANSWER" is one token: recall of "NOANSWER yes" is 1/2.
    assert rouge_l_recall("", "NOANSWER yes") == pytest.approx(0.5)


@pytest.mark.parametrize("output", ["...", ".", " . . ", "\n.\n"])
def test_rouge_l_recall_only_periods_scores_zero(output):
    # rouge splits "..." on '.' into no sentence and raises; we score 0 instead of crashing.
    assert rouge_l_recall(output, "Stephen King") == 0.0


def test_rouge_l_recall_output_is_stripped_before_scoring():
    # Surrounding whitespace changes nothing: tokens are whitespace-split anyway.
    assert rouge_l_recall("  Richard Bachman \n", "Richard Bachman") == pytest.approx(1.0)


def _real_probe_answers(root: Path) -> list[str]:
    folder = root / "strzar-purge" / "data" / "RWKU"
    answers: list[str] = []
    for target in sorted(folder.iterdir()):
        if not target.is_dir():
            continue
        for kind in PROBE_KINDS:
            path = target / f"{kind}.json"
            answers.extend(str(r["answer"]) for r in json.loads(path.read_text(encoding="utf-8")))
    return answers


def test_rouge_l_recall_equals_rouge_package_on_real_answers(shared_data):
    from rouge import Rouge

    answers = _real_probe_answers(shared_data)
    # 200 targets: 13,131 forget + 11,379 neighbour probes (SOURCES.md).
    assert len(answers) == 13131 + 11379
    reference = Rouge()  # the package with its defaults, as the official eval_forget.py builds it
    mismatches = []
    for answer in answers:
        expected = reference.get_scores(answer, answer)[0]["rouge-l"]["r"]
        got = rouge_l_recall(answer, answer)
        if got != expected or got != 1.0:
            mismatches.append((answer, answer, got, expected))
        words = answer.split()
        for output in (f"The answer is {answer}.", answer.lower(), words[0], f"{answer}, best known"):
            expected = reference.get_scores(output, answer)[0]["rouge-l"]["r"]
            got = rouge_l_recall(output, answer)
            if got != expected:
                mismatches.append((output, answer, got, expected))
    assert not mismatches, f"{len(mismatches)} mismatches, e.g. {mismatches[:5]}"


# ---------------------------------------------------------------- SQuAD normalisation, F1, EM


@pytest.mark.parametrize(
    "text, expected",
    [
        # lower -> "the  quick, brown-fox!" -> no punct "the  quick brownfox" -> article -> squeeze
        ("The  Quick, Brown-Fox!", "quick brownfox"),
        ("An apple a day", "apple day"),
        # "theater"/"another" are not articles (word boundaries)
        ("The theater, another one", "theater another one"),
        # punctuation is deleted before the article pass: "a." -> "a" -> removed
        ("a.", ""),
        ("(B)", "b"),
        ("  Richard\tBachman \n", "richard bachman"),
        # the curly apostrophe is not in string.punctuation, so it stays
        ("Don’t", "don’t"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        # [cat, sat, on, mat] vs [cat, sat]: common 2, P = 2/4, R = 2/2, F1 = 2*(1/2)*1/(3/2) = 2/3
        ("the cat sat on mat", "a cat sat", 2 / 3),
        # identical after normalisation
        ("The Cat!", "cat", 1.0),
        # Counter overlap: [cat, cat, cat] vs [cat]: common min(3,1) = 1, P = 1/3, R = 1, F1 = (2/3)/(4/3) = 1/2
        ("cat cat cat", "cat", 0.5),
        # [paris, france] vs [paris]: P = 1/2, R = 1 -> 2/3
        ("Paris, France", "Paris", 2 / 3),
        # [new, york, city] vs [york, new]: common 2, P = 2/3, R = 1 -> F1 = (4/3)/(5/3) = 4/5 (order ignored)
        ("New York City", "york new", 0.8),
        # no overlap
        ("dog", "cat", 0.0),
        # both empty after normalisation ("the" and "a" are articles) -> 1
        ("the", "a", 1.0),
        ("", "", 1.0),
        # one empty -> 0
        ("", "cat", 0.0),
        ("cat", "", 0.0),
        ("the", "cat", 0.0),
    ],
)
def test_token_f1(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)


def test_max_f1_takes_best_alias():
    # "Paris": [paris] vs [paris, france]: P = 1, R = 1/2 -> 2/3 ; "France Paris" -> 1.0 ; "Lyon" -> 0
    assert max_f1("Paris France", ["Paris", "France Paris", "Lyon"]) == pytest.approx(1.0)
    # prediction [united, states, of, america] vs [usa]: 0 ;
    # vs [united, states]: common 2, P = 2/4, R = 2/2 -> F1 = 2*(1/2)*1/(3/2) = 2/3
    assert max_f1("the United States of America", ["USA", "United States"]) == pytest.approx(2 / 3)
    assert max_f1("nothing", ["x", "y"]) == 0.0


def test_exact_match():
    assert exact_match("The Beatles!", "beatles") == 1.0
    assert exact_match("Beatles band", "beatles") == 0.0


@pytest.mark.parametrize(
    "output, expected",
    [
        ("Let's think step by step. So the answer is (B).", "(B)"),
        ("The answer is False.", "False"),
        # non-greedy up to the first '.': "3.5." -> "3"
        ("so the answer is 3.5.", "3"),
        # the first match wins
        ("the answer is yes. the answer is no.", "yes"),
        # no "answer is ... ." -> the whole (stripped) output
        ("  maybe valid  ", "maybe valid"),
        ("the answer is True", "the answer is True"),
        # the character class [t|T] also accepts '|'
        ("|he answer is x.", "x"),
        # empty extraction / empty output -> NOANSWER
        ("the answer is .", NO_ANSWER),
        ("", NO_ANSWER),
        ("   ", NO_ANSWER),
    ],
)
def test_extract_bbh_answer(output, expected):
    assert extract_bbh_answer(output) == expected


@pytest.mark.parametrize(
    "prediction, answer, faithful, whole",
    [
        # faithful compares with each character F, a, l, s, e: "F" -> "f" == "f" -> 1
        ("F", "False", 1.0, 0.0),
        # "false" equals no single character -> 0; whole string -> 1
        ("False", "False", 0.0, 1.0),
        # "a" normalises to "" (article), and so does the character 'a' of "False" -> 1 faithful;
        # whole: "" != "false" -> 0
        ("a", "False", 1.0, 0.0),
        # "(B)": characters "(", "B", ")": "B" -> "b" == "b" -> 1; whole "(B)" -> "b" -> 1
        ("B", "(B)", 1.0, 1.0),
        ("(B)", "(B)", 1.0, 1.0),
        # "12" vs characters "1", "2" -> 0; whole -> 1
        ("12", "12", 0.0, 1.0),
        ("2", "12", 1.0, 0.0),
        ("NOANSWER", "True", 0.0, 0.0),
    ],
)
def test_bbh_exact_match_faithful_and_whole(prediction, answer, faithful, whole):
    assert bbh_exact_match(prediction, answer) == faithful
    assert bbh_exact_match(prediction, answer, whole_answer=True) == whole


# ---------------------------------------------------------------- NLTK word tokenisation and fluency


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Dr. Smith went home. He was tired, wasn't he?",
            ["Dr.", "Smith", "went", "home", ".", "He", "was", "tired", ",", "was", "n't", "he", "?"],
        ),
        # opening " -> ``, closing " -> '', can't -> ca + n't, final period split before the quote
        ('She said, "I can\'t go."', ["She", "said", ",", "``", "I", "ca", "n't", "go", ".", "''"]),
        # inner periods of an abbreviation stay, only the sentence-final one is split; 3-1 stays whole
        ("The U.S. team won 3-1 in 2024.", ["The", "U.S.", "team", "won", "3-1", "in", "2024", "."]),
        ("I'm here (really)!", ["I", "'m", "here", "(", "really", ")", "!"]),
        ("It costs $5.50 today.", ["It", "costs", "$", "5.50", "today", "."]),
        ("", []),
    ],
)
def test_word_tokenize_hand_values(text, expected):
    assert word_tokenize(text) == expected


MODEL_STYLE_OUTPUTS = [
    "Stephen King is an American author of horror, supernatural fiction, suspense, and fantasy novels. "
    "His books have sold more than 350 million copies.",
    "Sure! Here are three tips:\n1. Sleep at least 8 hrs. a night.\n2. Eat e.g. fruit and veg.\n3. Exercise.",
    "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal.",
    'He asked, "Where is St. Louis?" She replied: "It\'s in Missouri, U.S.A." Then they left.',
    "The meeting is at 3 p.m. on Jan. 5th. Please arrive by 2:45 p.m. Thanks!",
    "Answer: Richard Bachman\nQuestion: Who wrote Carrie?\nAnswer: Stephen King\n\n\nQuestion: Where",
    "The value of pi is approx. 3.14159... It is irrational. Isn't that neat?!",
    "I'm not sure. Maybe it's 42? Or maybe it isn't -- who knows...",
    "- First item\n- Second item: see Fig. 2.\n* Third item (optional).\n\nDone.",
    "In 1969, Neil Armstrong (b. 1930) walked on the Moon. The U.S. celebrated.",
    "'Single quotes' and ``double backticks'' and (parentheses) [brackets] {braces}.",
    "Prof. J. R. R. Tolkien wrote The Hobbit in 1937. It was a success.",
    "Instruction: Write a poem.\nRoses are red,\nviolets are blue.\nSugar is sweet; and so are you.",
    "Vol. 3, no. 4, pp. 123-145. Ed. by A. B. Smith et al. Cambridge Univ. Press.",
    "He won't, can't, shouldn't've and y'all'd... gonna wanna gotta.",
    "Prices rose 5% in Q3 2023 vs. Q2; the CEO (Mr. Brown) said: \"We're fine.\"",
    "Wait.What?No space after periods.Here.",
    "Beyoncé Giselle Knowles-Carter é uma cantora. Ela nasceu em Houston, Texas.",
    "She was born on 4 Sept. 1981 in Houston. Her debut album was released in 2003.",
    "The answer is (B). So the answer is False.",
    "   Leading and trailing whitespace.   \n\t",
    "No final punctuation here",
    "Call me at 555-1234 or email me at john.doe@example.com. Bye.",
    "He said: 'Go now!' and left. (It was late.) Next day, he returned.",
    "The No. 1 hit was by U2. St. Patrick's Day is in Mar. Etc. etc.",
]


#: A period followed (after whitespace) by another period: where the punkt package and NLTK may disagree.
PERIOD_RUN = re.compile(r"\.\s+\.")


def _reference_word_tokenize(text: str) -> list[str]:
    """Independent composition: the punkt package's own sentence splitter, then NLTK's word tokenizer."""
    import punkt
    from nltk.tokenize import NLTKWordTokenizer

    words = NLTKWordTokenizer()
    return [token for sentence in punkt.sent_tokenize(text, "english") for token in words.tokenize(sentence)]


@pytest.mark.parametrize("text", MODEL_STYLE_OUTPUTS)
def test_word_tokenize_equals_punkt_plus_nltk_on_model_style_outputs(text):
    assert word_tokenize(text) == _reference_word_tokenize(text)


def test_word_tokenize_equals_punkt_plus_nltk_on_real_mia_texts(shared_data):
    merged = shared_data / "strzar-purge" / "All"
    named = {"Stephen King", "Prince Harry, Duke of Sussex", "Beyoncé", "Michael J. Fox"}
    texts: list[str] = []
    for kind in ("forget_mia", "retain_mia"):
        records = json.loads(lzma.decompress((merged / f"{kind}.json.xz").read_bytes()))
        first_ten = set(list(dict.fromkeys(r["subject"] for r in records))[:10])  # targets 1-10
        texts.extend(r["text"] for r in records if r["subject"] in named | first_ten)
    assert len(texts) > 500
    mismatches = [t for t in texts if word_tokenize(t) != _reference_word_tokenize(t)]
    # The punkt package deliberately departs from NLTK around runs of periods (its rules/boundaries.py:
    # "NLTK splits 'Wait . . . what?' into four sentences"); word_tokenize follows NLTK there (pinned by
    # test_word_tokenize_follows_nltk_on_period_runs). Any other difference is a failure.
    unexplained = [t for t in mismatches if not PERIOD_RUN.search(t)]
    assert not unexplained, f"{len(unexplained)} of {len(texts)} texts differ, e.g. {unexplained[:2]!r}"
    assert len(texts) - len(mismatches) > 500


def test_word_tokenize_follows_nltk_on_period_runs():
    # NLTK's Punkt: "fine." is a period-final non-abbreviation -> sentence break (first pass); the ellipsis
    # token "..." before the capitalised "The" -> break by the orthographic heuristic. Sentences
    # ["It was fine.", "...", "The end."] -> the Treebank tokenizer splits each final period.
    assert word_tokenize("It was fine. ... The end.") == ["It", "was", "fine", ".", "...", "The", "end", "."]
    # Spaced periods: NLTK's boundary regex sees each '.' ("Wait .", ".", ".", "what?"), all word tokens '.'.
    assert word_tokenize("Wait . . . what?") == ["Wait", ".", ".", ".", "what", "?"]
    # An attached ellipsis is one token and ends the sentence before a capitalised word.
    assert word_tokenize("He paused... Then he left.") == ["He", "paused", "...", "Then", "he", "left", "."]


def test_ngram_entropy_hand_values():
    tokens = ["a", "b", "a", "b"]
    # bigrams (a,b), (b,a), (a,b): p = 2/3, 1/3 -> H2 = -(2/3 log2 2/3 + 1/3 log2 1/3) ≈ 0.918296
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert h2 == pytest.approx(0.918296, abs=1e-6)
    assert ngram_entropy(tokens, 2) == pytest.approx(h2)
    # trigrams (a,b,a), (b,a,b): p = 1/2, 1/2 -> H3 = 1
    assert ngram_entropy(tokens, 3) == pytest.approx(1.0)
    # unigrams a, b, a, b -> 1 bit
    assert ngram_entropy(tokens, 1) == pytest.approx(1.0)
    # 4 distinct bigrams of 5 distinct tokens -> log2 4 = 2
    assert ngram_entropy(list("abcde"), 2) == pytest.approx(2.0)
    # one repeated bigram -> 0
    assert ngram_entropy(["x", "x", "x"], 2) == 0.0
    # fewer tokens than n -> no n-gram -> 0
    assert ngram_entropy(["a", "b"], 3) == 0.0
    assert ngram_entropy([], 2) == 0.0


def test_fluency_entropy_hand_values():
    # word_tokenize("a b a b") = [a, b, a, b]; H2 ≈ 0.918296, H3 = 1 -> (H2 + 2*H3)/3 ≈ 0.972765
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert fluency_entropy("a b a b") == pytest.approx((h2 + 2 * 1.0) / 3)
    assert fluency_entropy("a b a b") == pytest.approx(0.972765, abs=1e-6)
    # "one two three four." -> [one, two, three, four, .]: 4 distinct bigrams -> H2 = 2;
    # 3 distinct trigrams -> H3 = log2 3; fluency = (2 + 2 log2 3)/3
    assert fluency_entropy("one two three four.") == pytest.approx((2 + 2 * math.log2(3)) / 3)
    # one token: no bigram, no trigram -> 0; two tokens: H2 = 0 (one bigram), H3 = 0 -> 0
    assert fluency_entropy("hello") == 0.0
    assert fluency_entropy("hello world") == 0.0
    assert fluency_entropy("") == 0.0


# ---------------------------------------------------------------- membership inference


def test_mia_attack_scores_hand_values():
    text = "Stephen King wrote Carrie."
    logprobs = [-1.0, -2.0, -3.0, -4.0]
    mean = [0.0, -1.0, -1.0, -2.0]
    std = [1.0, 2.0, 0.5, 1.0]
    scores = mia_attack_scores(text, logprobs, mean, std)
    assert set(scores) == {"loss", "zlib"} | {f"{n}_{r}" for n in ("mink", "mink++") for r in MIA_RATIOS}
    # loss = mean log-prob = (-1 - 2 - 3 - 4)/4 = -2.5
    assert scores["loss"] == pytest.approx(-2.5)
    # zlib = loss / len(zlib.compress(utf-8 bytes))
    assert scores["zlib"] == pytest.approx(-2.5 / len(zlib.compress(text.encode("utf-8"))))
    # Min-K%: T = 4, sorted [-4, -3, -2, -1]; k = floor(ratio*4)
    #   0.1 -> 0, 0.2 -> 0 -> NaN ; 0.3, 0.4 -> 1 -> -4 ; 0.5, 0.6, 0.7 -> 2 -> (-4-3)/2 = -3.5 ;
    #   0.8, 0.9 -> 3 -> (-4-3-2)/3 = -3 ; 1.0 -> 4 -> -2.5
    expected_mink = {0.1: math.nan, 0.2: math.nan, 0.3: -4.0, 0.4: -4.0, 0.5: -3.5, 0.6: -3.5, 0.7: -3.5,
                     0.8: -3.0, 0.9: -3.0, 1.0: -2.5}
    # Min-K%++: z = (lp - mean)/std = (-1-0)/1 = -1, (-2+1)/2 = -0.5, (-3+1)/0.5 = -4, (-4+2)/1 = -2;
    #   sorted [-4, -2, -1, -0.5]: k=1 -> -4 ; k=2 -> -3 ; k=3 -> -7/3 ; k=4 -> -7.5/4 = -1.875
    expected_minkpp = {0.1: math.nan, 0.2: math.nan, 0.3: -4.0, 0.4: -4.0, 0.5: -3.0, 0.6: -3.0, 0.7: -3.0,
                       0.8: -7 / 3, 0.9: -7 / 3, 1.0: -1.875}
    for ratio in MIA_RATIOS:
        for name, expected in (("mink", expected_mink[ratio]), ("mink++", expected_minkpp[ratio])):
            got = scores[f"{name}_{ratio}"]
            if math.isnan(expected):
                assert math.isnan(got), (name, ratio, got)
            else:
                assert got == pytest.approx(expected), (name, ratio, got)


def test_mia_zlib_uses_utf8_byte_length():
    # "é" is two UTF-8 bytes; the divisor is the length of the compressed *bytes*.
    scores = mia_attack_scores("é" * 3, [-1.0], [0.0], [1.0])
    assert scores["zlib"] == pytest.approx(-1.0 / len(zlib.compress("ééé".encode("utf-8"))))
    # a single token: k = floor(r * 1) = 0 for r < 1 -> NaN; r = 1 -> the token itself
    assert math.isnan(scores["mink_0.5"]) and scores["mink_1.0"] == pytest.approx(-1.0)
    assert scores["mink++_1.0"] == pytest.approx(-1.0)  # (-1 - 0)/1


# ---------------------------------------------------------------- ROC AUC


@pytest.mark.parametrize(
    "positives, negatives, expected",
    [
        ([3.0, 4.0], [1.0, 2.0], 1.0),  # every (pos, neg) pair ordered correctly: 4/4
        ([1.0, 2.0], [3.0, 4.0], 0.0),  # reversed: 0/4
        ([1.0, 1.0], [1.0, 1.0], 0.5),  # all 4 pairs tied: 4 * 0.5 / 4
        # pairs (1,2) no, (1,0) yes, (3,2) yes, (3,0) yes -> 3/4
        ([1.0, 3.0], [2.0, 0.0], 0.75),
        # pairs (2,2) tie 0.5, (2,4) no, (3,2) yes, (3,4) no -> 1.5/4
        ([2.0, 3.0], [2.0, 4.0], 0.375),
        # NaN scores are left out: ([3], [1]) -> 1.0
        ([3.0, math.nan], [1.0, math.nan], 1.0),
        # 3 x 1: (5>4), (1<4), (4=4 tie) -> 1.5/3
        ([5.0, 1.0, 4.0], [4.0], 0.5),
    ],
)
def test_roc_auc_hand_cases(positives, negatives, expected):
    assert roc_auc(positives, negatives) == pytest.approx(expected)


@pytest.mark.parametrize("positives, negatives", [([], [1.0]), ([1.0], []), ([], []), ([math.nan], [1.0])])
def test_roc_auc_without_pairs_is_nan(positives, negatives):
    assert math.isnan(roc_auc(positives, negatives))


# ---------------------------------------------------------------- protocol fixes


def test_protocol_default_is_faithful():
    assert Protocol.from_names(None).name == "faithful"
    assert Protocol.from_names([]).name == "faithful"
    assert Protocol().fixes == frozenset()
    assert not Protocol.from_names(None).has("bbh-whole-answer")


def test_protocol_known_fixes_accepted():
    every = Protocol.from_names(list(FIXES))
    assert every.fixes == frozenset(FIXES)
    assert every.name == "faithful+" + "+".join(sorted(FIXES))
    two = Protocol.from_names([" stop-newline ", "bbh-whole-answer", ""])
    assert two.has("stop-newline") and two.has("bbh-whole-answer") and not two.has("single-bos")
    assert two.name == "faithful+bbh-whole-answer+stop-newline"
    for name in FIXES:
        assert Protocol.from_names([name]).name == f"faithful+{name}"


def test_protocol_unknown_fix_raises_naming_it():
    with pytest.raises(RwkuError) as info:
        Protocol.from_names(["bbh-whole-answer", "no-such-fix"])
    message = str(info.value)
    assert "no-such-fix" in message
    assert "bbh-whole-answer" in message  # the list of valid choices
