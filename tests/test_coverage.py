"""Corpus coverage (``rwku.corpus.coverage``): which forget answers a training corpus states in full, counted by
hand on a small corpus, with ROUGE-L's normalisation (split at '.', whitespace words, case kept) and the
``rouge-strip-punctuation`` fix; and the unit summary's coverage of what a method trained on."""

from __future__ import annotations

from rwku.corpus.build import Corpus
from rwku.corpus.coverage import answer_found, corpus_coverage

CORPUS = [
    "Isaac Newton was born in Lincolnshire. He studied at Trinity College, Cambridge.",
    "He wrote the Principia in 1687 and was buried in Westminster Abbey.",
    "His reflecting telescope used a mirror",
]


def test_coverage_counted_by_hand():
    answers = ["Lincolnshire", "Cambridge", "Principia", "1687", "Westminster Abbey", "Reflecting telescope",
               "Royal Mint", "Lincolnshire"]
    # found: Lincolnshire (twice: once per probe), Cambridge and Abbey (their periods end sentences, which ROUGE
    # splits at), Principia, 1687; not found: "Reflecting" (the text says "reflecting": case counts), "Royal Mint".
    result = corpus_coverage(CORPUS, answers)
    assert result == {"answers": 8, "found": 6, "percent": 75.0, "missing": ["Reflecting telescope", "Royal Mint"]}


def test_punctuation_and_order_follow_the_rouge_normalisation():
    assert not answer_found(["He studied at Cambridge, then London"], "Cambridge")  # "Cambridge," is another word
    assert answer_found(["He studied at Cambridge, then London"], "Cambridge", strip_punctuation=True)
    assert answer_found(["Westminster is where the old Abbey stands"], "Westminster Abbey")  # LCS: in order, not adjacent
    assert not answer_found(["the Abbey of Westminster"], "Westminster Abbey")  # out of order: recall 0.5
    assert not answer_found([], "Principia")
    assert corpus_coverage(CORPUS, []) == {"answers": 0, "found": 0, "percent": None, "missing": []}


def test_unit_coverage_reads_the_kinds_the_method_trained_on(tmp_path):
    """GA's coverage counts its forget texts; DPO's leaves out the made-up biographies; RT's is over its
    questions; ICU trains on nothing (None)."""
    from types import SimpleNamespace

    from rwku.data.loader import RwkuData
    from rwku.evaluation.settings import RunSettings
    from rwku.unlearn import unit_coverage

    data = RwkuData.open(["demo"])
    newton = data.select("1")[0]
    job = SimpleNamespace(data=data, run=RunSettings())
    corpus = Corpus(targets=["Isaac Newton"], forget=["Isaac Newton wrote the Principia in 1687 in Lincolnshire"],
                    counterfactual=["Isaac Newton was born in Lincolnshire and wrote Opticks"],
                    questions=["Where was Isaac Newton born? Lincolnshire"])
    ga = unit_coverage(job, [newton], corpus, "ga")
    assert ga["kinds"] == ["forget"] and ga["answers"] == 22
    assert ga["found"] == 7  # Principia, Lincolnshire twice, Isaac Newton three times (three level-3 probes), 1687
    assert "Opticks" in ga["missing"] and unit_coverage(job, [newton], corpus, "dpo")["found"] == ga["found"]
    rt = unit_coverage(job, [newton], corpus, "rt")
    assert rt["kinds"] == ["questions"] and rt["found"] == 5  # Lincolnshire twice, Isaac Newton three times
    assert unit_coverage(job, [newton], corpus, "icu") is None
