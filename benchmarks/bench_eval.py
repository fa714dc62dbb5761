"""Benchmark: rwku's evaluation engine vs. the official way of running the same evaluation, in one process.

The official way is the ``official`` model backend (:mod:`rwku.models.backends.official`: ``model.generate`` on
the official fixed batches, MMLU one prompt at a time on full-length logits, TruthfulQA in batches of 4, MIA one
text at a time); the engine is the default ``hf`` backend. Both build the same prompts and score with the same
metric functions; only the model execution differs, so the scores must agree. Prints both times (wall, and the
process's CPU seconds, the fairer measure on a shared machine), the speed-ups,
the largest score difference and how many probe outputs differ; ``--json`` also writes them to a file. Runs on
the GPU when there is one (``--device``). ``--runs`` picks the runs: ``official``, ``engine`` (the default
backend), ``undrafted`` (the engine with prompt-lookup drafting off) and ``engine-bN`` (the engine at batch size N);
every run after the first engine run is checked against it: generated texts (probes, BBH, TriviaQA, fluency) and
items that differ, which under the default invariant kernels must be none.

    python benchmarks/bench_eval.py --data ../shared/rwku-data/strzar-purge --target 1 --limit 12
    python benchmarks/bench_eval.py --target 1 --limit 0 --runs engine,undrafted,engine-b1,engine-b8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import torch

import rwku.knowledge  # noqa: F401  (registers smollm2-135m-demo with the loader, for --model)
from rwku.data import RwkuData
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.io import read_json, write_json_atomic
from rwku.models import PromptFormat, load_model
from rwku.models.backends import make_backend
from rwku.results import flatten


def largest_difference(a: dict, b: dict) -> tuple[float, str]:
    worst, where = 0.0, ""
    flat_a, flat_b = flatten(a), flatten(b)
    for key, value in flat_a.items():
        if key.startswith("seconds.") or key not in flat_b:
            continue
        diff = abs(value - flat_b[key])
        if diff > worst:
            worst, where = diff, key
    return worst, where


def probe_outputs(result) -> list[str]:
    """The forget and neighbour probes' outputs of a run (none when those sets did not run)."""
    return [i["output"] for part in ("forget", "neighbor") for i in result.items.get(part, [])]


def generated_outputs(result) -> list[str]:
    """Every generated text of a run: probe outputs, then BBH, TriviaQA and fluency generations."""
    texts = probe_outputs(result)
    utility = result.items.get("utility", {})
    texts += [i["raw_output"] for i in utility.get("bbh", [])] + [i["output"] for i in utility.get("triviaqa", [])]
    return texts + [i["output"] for i in utility.get("fluency", [])]


def answers_by_prompt(result) -> dict[tuple[str, str], str]:
    """Every answer of a run by set and prompt: probe outputs, BBH's raw output, TriviaQA and fluency texts, the
    MMLU letter and the TruthfulQA choice (so runs with different ``--limit`` compare on the items both hold)."""
    answers = {(part, i["prompt"]): i["output"] for part in ("forget", "neighbor") for i in result.items.get(part, [])}
    for name, items in result.items.get("utility", {}).items():
        field = "raw_output" if name == "bbh" else "output"
        answers |= {(name, i["prompt"]): i[field] for i in items}
    return answers


def run_backend(lm, name: str, batch_size: int):
    """The backend of one named run (see the module docstring)."""
    if name == "official":
        return make_backend(lm, "official", device=lm.device)
    if name == "engine":
        return make_backend(lm, batch_size=batch_size)
    if name == "undrafted":
        return make_backend(lm, batch_size=batch_size, draft=0)
    if name.startswith("engine-b") and name[len("engine-b"):].isdigit():
        return make_backend(lm, batch_size=int(name[len("engine-b"):]))
    raise SystemExit(f"--runs: unknown run {name!r}; choose official, engine, undrafted or engine-bN")


def same_as_engine(engine, other) -> tuple[int, int, int]:
    """How many generated texts a run has, how many differ from the engine's, and how many items differ at all."""
    texts, theirs = generated_outputs(engine), generated_outputs(other)
    mine_items, their_items = flatten_items(engine), flatten_items(other)
    differing_items = sum(a != b for part, rows in mine_items.items() for a, b in zip(rows, their_items[part]))
    return len(texts), sum(a != b for a, b in zip(texts, theirs)), differing_items


def flatten_items(result) -> dict[str, list]:
    """Every set's items of a run, the utility subsets by name."""
    parts = {part: rows for part, rows in result.items.items() if part != "utility"}
    return parts | {f"utility.{name}": rows for name, rows in result.items.get("utility", {}).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/rwku-data/strzar-purge")
    parser.add_argument("--target", default="1")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=12, help="items per part (FB, QA, AA, FM, RM, each utility set); 0: all")
    parser.add_argument("--batch-size", type=int, default=32, help="the engine's batch size")
    parser.add_argument("--sets", default="forget,neighbor,mia,utility", help="comma-separated sets to run (e.g. mia)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:1 ...")
    parser.add_argument("--kernels", default="invariant", choices=("invariant", "fast"))
    parser.add_argument("--runs", default="official,engine", help="comma-separated: official, engine, undrafted, engine-bN")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--items", type=Path, help="also write each run's items (every prompt, output and score) to DIR/<run>.items.json")
    parser.add_argument("--reference", type=Path, help="a stored run's items.json (e.g. rwku eval's): count the answers each run changes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = RwkuData.open([args.data])
    target = data.select(args.target)[0]
    sets = tuple(args.sets.split(","))
    target_data = load_target(data, target, sets, args.limit or None)
    lm = load_model(args.model, device=args.device, kernels=args.kernels)
    prompts = PromptFormat(lm.tokenizer)

    timings, cpu, results = {}, {}, {}
    for name in args.runs.split(","):
        context = EvalContext(lm=lm, prompts=prompts, backend=run_backend(lm, name, args.batch_size))
        start, cpu_start = time.perf_counter(), time.process_time()
        results[name] = evaluate_target(context, target_data, sets)
        timings[name], cpu[name] = time.perf_counter() - start, time.process_time() - cpu_start
        if args.items:
            write_json_atomic(args.items / f"{name}.items.json", results[name].items)
        per_set = ", ".join(f"{k} {v:.1f}s" for k, v in results[name].summary["seconds"].items())
        print(f"{name:>9}: {timings[name]:7.1f} s wall, {cpu[name]:7.1f} s CPU  ({per_set})", flush=True)
    print(f"target {target.number} {target.name}, model {args.model}, limit {args.limit or 'none'}, {torch.get_num_threads()} threads, "
          f"kernels {lm.kernels}, items {next(iter(results.values())).summary['n_items']}")
    measured: dict = {}
    if "official" in results and "engine" in results:
        diff, key = largest_difference(results["official"].summary, results["engine"].summary)
        outputs_official, outputs_engine = probe_outputs(results["official"]), probe_outputs(results["engine"])
        differing = sum(a != b for a, b in zip(outputs_official, outputs_engine))
        print(f"speed-up (official / engine): {timings['official'] / timings['engine']:.2f}x wall, {cpu['official'] / cpu['engine']:.2f}x CPU")
        print(f"largest score difference: {diff:.2e} ({key or 'none'}); probe outputs differing: {differing}/{len(outputs_engine)}")
        measured = {"speedup": timings["official"] / timings["engine"], "cpu_speedup": cpu["official"] / cpu["engine"],
                    "largest_difference": diff, "largest_difference_at": key, "outputs_differing": differing, "outputs": len(outputs_engine)}
    for name in [n for n in results if n not in ("official", "engine")] if "engine" in results else []:
        texts, differing_texts, differing_items = same_as_engine(results["engine"], results[name])
        print(f"{name}: {cpu['engine'] / cpu[name]:.2f}x the engine's CPU time; generated texts differing from the engine's: "
              f"{differing_texts}/{texts}; items differing: {differing_items}")
        measured[name] = {"cpu_ratio": cpu["engine"] / cpu[name], "texts": texts, "texts_differing": differing_texts,
                          "items_differing": differing_items}
    if args.reference:
        reference = answers_by_prompt(SimpleNamespace(items=read_json(args.reference)))
        for name, result in results.items():
            mine = answers_by_prompt(result)
            shared = [key for key in mine if key in reference]
            differing = sum(mine[key] != reference[key] for key in shared)
            print(f"{name} against {args.reference}: answers (generated texts, MMLU letters, TruthfulQA choices) of the "
                  f"items both hold differing {differing}/{len(shared)}")
            measured.setdefault("reference", {})[name] = {"answers": len(shared), "answers_differing": differing}
    if args.json:
        write_json_atomic(args.json, {**measured, "device": str(lm.device), "dtype": str(lm.dtype).removeprefix("torch."), "kernels": lm.kernels,
                                      "limit": args.limit, "threads": torch.get_num_threads(), "seconds": timings, "cpu_seconds": cpu,
                                      "seconds_per_set": {name: r.summary["seconds"] for name, r in results.items()}})


if __name__ == "__main__":
    main()
