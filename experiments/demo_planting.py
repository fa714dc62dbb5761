"""The demo planting sweep (docs/demo.md): plant SmolLM2-135M on the demo targets (Newton and Curie; Mozart the
control) with a recipe, then sample the small preset's forget corpus (8 texts, 96 tokens, seed 42) from the planted
model as the main job does and measure its coverage of each target's forget answers.

    python experiments/demo_planting.py --set biographies=12 --set epochs=3 --set neighbor_facts=1 [--out results.jsonl]

Each run prints one JSON line (recipe, planting seconds, forget/neighbour All per target base -> planted, coverage
per planted target) and appends it to ``--out``. The planted model is cached as ``smollm2-135m-demo-<key>`` in the
rwku cache (``$RWKU_CACHE``); with ``DEMO_RECIPE``'s values it is the main job's model (the main job builds it without
a before/after table: then the table is measured here).
"""

from __future__ import annotations

import argparse
import json
import time

from rwku.corpus.build import CorpusSpec, build_corpus
from rwku.corpus.coverage import corpus_coverage
from rwku.data.schema import Target
from rwku.evaluation.context import no_progress
from rwku.evaluation.sets.probes import FORGET_PART
from rwku.models.loading import DEFAULT_MODEL, PLANTED_DEMO_MODEL, load_model
from rwku.knowledge.planting import MEASURE_SETS, PlantRecipe, cached_plant, demo_plan, measure, plant_table, read_record
from rwku.models.prompting import PromptFormat

#: The small preset's corpus (``methods/config.py`` ``SMALL_CORPUS``) and the training seed.
SMALL_SPEC = CorpusSpec(size=8, questions=8, max_new_tokens=96, seed=42)


def coverage_of(folder, data, target: Target) -> dict:
    lm = load_model(str(folder), device="cpu")
    texts = build_corpus(lm, target, SMALL_SPEC, ["forget"], prompts=PromptFormat(lm.tokenizer, style="chat"),
                         progress=no_progress).forget
    answers = [p.answer for p in data.load(target, (FORGET_PART,))["forget"]]
    return corpus_coverage(texts, answers)


def planting_table(folder, data, targets: list[Target], control: Target) -> dict:
    """The folder's before/after table (forget, neighbour and MIA of the base and the planted model), measured now
    when the folder was built without one."""
    if (folder / "table.json").is_file():
        return json.loads((folder / "table.json").read_text())
    base, planted = (measure(load_model(spec, device="cpu", dtype="float32"), data, targets, MEASURE_SETS, 32, no_progress)
                     for spec in (DEFAULT_MODEL, str(folder)))
    return plant_table(targets, [t.name for t in targets if t != control], base, planted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    recipe = PlantRecipe.with_overrides(dict(item.split("=", 1) for item in args.set))
    data, targets, control = demo_plan()
    start = time.perf_counter()
    folder = cached_plant(DEFAULT_MODEL, data, targets, control, recipe, PLANTED_DEMO_MODEL)
    record = read_record(folder)
    table = planting_table(folder, data, targets, control)
    row = {"recipe": record["recipe"], "folder": str(folder), "seconds": record["seconds"],
           "wall": round(time.perf_counter() - start, 1), "texts": record["texts"], "targets": {}}
    for entry in table["rows"]:
        scores = {which: {s: entry[which].get(s) for s in ("forget", "neighbor")} for which in ("base", "planted")}
        row["targets"][entry["target"]] = {"role": entry["role"], **scores}
    for target in targets:
        if target != control:
            row["targets"][target.name]["coverage"] = coverage_of(folder, data, target)
    print(json.dumps(row))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
