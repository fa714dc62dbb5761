"""Sweep planting recipes on real RWKU targets: plant, then measure each planted model (the base model once).

    python scripts/plant_sweep.py --data ../shared/rwku-data/strzar-purge --targets 104,165 --control 177 \
        --run 'derive-1e-4x3:derive=1,max_passages=1000,lr=1e-4,epochs=3' --run 'passages:max_passages=1000' \
        --out runs/plant-sweep

Each ``--run NAME:key=value,...`` is a recipe (``PlantRecipe`` overrides). Models go to ``OUT/models/NAME``
(``rwku plant``'s folders: cached, atomic), the base model's summaries to ``OUT/base.json`` and one row per run to
``OUT/sweep.json`` (written atomically after each run; a run already there is skipped, so the sweep resumes).
A row holds per target the base and planted summaries, the texts per kind, steps and minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def parse_run(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition(":")
    pairs = [item.split("=", 1) for item in settings.split(",") if item.strip()]
    return name.strip(), {key.strip(): value.strip() for key, value in pairs}


def load_json(path: Path, default):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def main() -> None:
    import torch

    from rwku.data.loader import RwkuData
    from rwku.evaluation.context import no_progress
    from rwku.models.loading import DEFAULT_MODEL, load_model
    from rwku.knowledge.planting import PlantRecipe, measure, plant, scores_only
    from rwku.io import write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--targets", required=True, help="planted targets")
    parser.add_argument("--control", required=True, help="the control target (measured, never planted)")
    parser.add_argument("--run", action="append", required=True, help="NAME:key=value,... (repeatable)")
    parser.add_argument("--sets", default="forget,neighbor")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = RwkuData.open([args.data])
    planted, control = data.select(args.targets), data.select(args.control)[0]
    targets, sets = [*planted, control], tuple(args.sets.split(","))
    base_path, sweep_path = args.out / "base.json", args.out / "sweep.json"
    base = load_json(base_path, {})
    missing = [t for t in targets if f"{t.name}|{args.sets}" not in base]
    if missing:
        lm = load_model(args.model, device="cpu", dtype="float32")
        for target, summary in measure(lm, data, missing, sets, 32, no_progress).items():
            base[f"{target}|{args.sets}"] = scores_only(summary)
        write_json_atomic(base_path, base)
    rows = load_json(sweep_path, [])
    for name, settings in map(parse_run, args.run):
        row_key = {"run": name, "targets": [t.name for t in planted], "control": control.name, "sets": args.sets}
        if any({k: r[k] for k in row_key} == row_key for r in rows):
            print(f"{name}: done before", flush=True)
            continue
        recipe = PlantRecipe.with_overrides(settings)
        start = time.perf_counter()
        result = plant(args.model, data, targets, args.out / "models" / name, recipe, control=control, sets=())
        minutes = (time.perf_counter() - start) / 60
        lm = load_model(str(result.folder), device="cpu", dtype="float32")
        after = measure(lm, data, targets, sets, 32, no_progress)
        rows.append({**row_key, "settings": settings, "texts": result.record["texts"],
                     "steps": len(result.record["train_log"]), "train_minutes": round(minutes, 1),
                     "reused": result.reused, "threads": args.threads,
                     "per_target": {t.name: {"base": base[f"{t.name}|{args.sets}"], "planted": scores_only(after[t.name])}
                                    for t in targets}})
        write_json_atomic(sweep_path, rows)
        print(name, json.dumps(summary_line(rows[-1])), flush=True)


def summary_line(row: dict) -> dict:
    """Forget and neighbour All per target, base -> planted."""
    out = {}
    for target, pair in row["per_target"].items():
        out[target] = {part: [pair[which].get(part, {}).get("All") for which in ("base", "planted")]
                       for part in ("forget", "neighbor")}
    return out


if __name__ == "__main__":
    main()
