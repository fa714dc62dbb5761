"""What planting texts hold: per target, texts per kind, words, the share of its forget answers the texts state,
and how many derived texts the probe guard dropped.

    python scripts/plant_coverage.py --data ../shared/rwku-data/strzar-purge --targets 104,165,153,157

An answer counts as stated when its normalised words (lower case, no punctuation or articles: the SQuAD
normalisation) occur, in order and adjacent, in one normalised text. Columns: ``demo`` is the default recipe
(the first 16 passages), ``passages`` all passages, ``derived`` the derived texts alone (statements, blanks and
their answers, who-questions), ``real`` the real recipe (all passages and the derived texts).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def stated(texts: list[str], answers: list[str]) -> float:
    """Percent of ``answers`` (repeats counted) whose normalised words some text contains."""
    from rwku.knowledge.derived_texts import normalised_words

    bodies = [normalised_words(t) for t in texts]
    found = sum(any(normalised_words(a) in body for body in bodies) for a in answers)
    return round(100.0 * found / len(answers), 1) if answers else float("nan")


def main() -> None:
    from rwku.data.loader import RwkuData
    from rwku.data.schema import PASSAGE
    from rwku.evaluation.sets.probes import FORGET_PART, NEIGHBOR_PART
    from rwku.knowledge.derived_texts import derive, drop_probe_questions
    from rwku.knowledge.planting import REAL_RECIPE, PlantRecipe, planting_texts

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--targets", required=True)
    args = parser.parse_args()
    data = RwkuData.open([args.data])
    rows = []
    for target in data.select(args.targets):
        loaded = data.load(target, (FORGET_PART, NEIGHBOR_PART), optional=(PASSAGE,))
        answers = [p.answer for p in loaded["forget"]]
        questions = [p.query for part in ("forget", "neighbor") for p in loaded[part]]
        derived = derive(loaded["passage"], target.name, REAL_RECIPE.blanks_per_sentence)
        _, dropped = drop_probe_questions(derived, questions)
        real = planting_texts(data, [target], REAL_RECIPE)
        demo = planting_texts(data, [target], PlantRecipe())
        full = lambda texts: [f"{t.text} {t.answer}" for t in texts]  # noqa: E731
        rows.append({
            "target": f"{target.number} {target.name}", "passages": len(loaded["passage"]),
            "texts": dict(Counter(t.kind for t in real)), "words": sum(len(t.split()) for t in full(real)),
            "dropped_by_guard": dropped, "forget_answers": len(answers),
            "stated": {"demo": stated(full(demo), answers), "passages": stated(list(loaded["passage"]), answers),
                       "derived": stated(full([t for t in real if t.kind != "passage"]), answers),
                       "real": stated(full(real), answers)}})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
