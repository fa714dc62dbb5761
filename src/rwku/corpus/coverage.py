"""Corpus coverage: the share of a target's forget-probe answers that the corpus a method trained on states.

A zero-shot method can only remove what its corpus reaches: if the texts the model wrote about a target never name
an answer the forget probes ask for, no loss on those texts points at that answer. Coverage tells, on any model,
whether the method could have reached the knowledge at all (it is stored in every trained unit's summary and shown
in the report beside forget All).

An answer counts as found when some corpus text recalls all of it by ROUGE-L, the forget set's own metric, with
the same normalisation (the ``rouge`` package splits at '.' and on whitespace and keeps case; the
``rouge-strip-punctuation`` fix strips punctuation from word edges on both sides), so "found" means a model that
wrote that text as its answer would score full recall on the probe.
"""

from __future__ import annotations

from typing import Any, Sequence

from rwku.evaluation.metrics import rouge_l_recall, strip_edge_punctuation

#: Corpus kinds that are not the target's knowledge as the model states it: made-up biographies and refusals
#: (the retain corpus is never a target's; see ``rwku.corpus.retain``).
NOT_KNOWLEDGE: tuple[str, ...] = ("counterfactual", "refusals", "retain")


def rouge_words(text: str, strip_punctuation: bool) -> set[str]:
    """The words ROUGE-L compares (split at '.' and whitespace, case kept), as a set."""
    text = strip_edge_punctuation(text) if strip_punctuation else text
    return {word for sentence in text.split(".") for word in sentence.split()}


def answer_found(texts: Sequence[str], answer: str, strip_punctuation: bool = False) -> bool:
    """Whether some text recalls ``answer`` in full (ROUGE-L recall 1); texts lacking one of its words are skipped
    without computing ROUGE."""
    needed = rouge_words(answer, strip_punctuation)
    return any(needed <= rouge_words(text, strip_punctuation) and rouge_l_recall(text, answer, strip_punctuation) == 1.0
               for text in texts)


def corpus_coverage(texts: Sequence[str], answers: Sequence[str], *, strip_punctuation: bool = False) -> dict[str, Any]:
    """How many of ``answers`` (one per probe, repeats counted) some text of ``texts`` states in full: the count,
    the share in percent (None without answers) and the answers not found (each once, in probe order)."""
    missing = [a for a in answers if not answer_found(texts, a, strip_punctuation)]
    found = len(answers) - len(missing)
    return {"answers": len(answers), "found": found, "percent": 100.0 * found / len(answers) if answers else None,
            "missing": list(dict.fromkeys(missing))}
