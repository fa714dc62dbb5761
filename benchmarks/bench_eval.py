"""Benchmark: rwku's evaluation engine vs. the official way of running the same evaluation, in one process.

The official way is the ``official`` model backend (:mod:`rwku.models.backends.official`: ``model.generate`` on
the official fixed batches, MMLU one prompt at a time on full-length logits, TruthfulQA in batches of 4, MIA one
text at a time); the engine is the default ``hf`` backend. Both build the same prompts and score with the same
metric functions; only the model execution differs, so the scores must agree. Prints both times (wall, and the
process's CPU seconds, the fairer measure on a shared machine), the speed-ups,
the largest score difference and how many probe outputs differ; ``--json`` also writes them to a file. Runs on
the GPU when there is one (``--device``). ``--draft N`` also runs the engine with N-token prompt-lookup drafting
(opt-in) and counts the generated outputs (probes, BBH, TriviaQA, fluency) that differ from the undrafted engine's.

    python benchmarks/bench_eval.py --data ../shared/rwku-data/strzar-purge --target 1 --limit 12
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rwku.data import RwkuData
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.models import PromptFormat, load_model
from rwku.models.backends import make_backend
from rwku.results import flatten, write_json_atomic


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/rwku-data/strzar-purge")
    parser.add_argument("--target", default="1")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=12, help="items per part (FB, QA, AA, FM, RM, each utility set)")
    parser.add_argument("--batch-size", type=int, default=32, help="the engine's batch size")
    parser.add_argument("--sets", default="forget,neighbor,mia,utility", help="comma-separated sets to run (e.g. mia)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:1 ...")
    parser.add_argument("--kernels", default="invariant", choices=("invariant", "fast"))
    parser.add_argument("--draft", type=int, default=0, help="also run the engine with prompt-lookup drafts of this many tokens")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = RwkuData.open([args.data])
    target = data.select(args.target)[0]
    sets = tuple(args.sets.split(","))
    target_data = load_target(data, target, sets, args.limit)
    lm = load_model(args.model, device=args.device, kernels=args.kernels)
    prompts = PromptFormat(lm.tokenizer)
    official = make_backend(lm, "official", device=lm.device)

    timings, cpu, results = {}, {}, {}
    contexts = [("official", EvalContext(lm=lm, prompts=prompts, backend=official)),
                ("engine", EvalContext(lm=lm, prompts=prompts, batch_size=args.batch_size))]
    if args.draft:
        drafted = make_backend(lm, batch_size=args.batch_size, draft=args.draft)
        contexts.append(("drafted", EvalContext(lm=lm, prompts=prompts, batch_size=args.batch_size, backend=drafted)))
    for name, context in contexts:
        start, cpu_start = time.perf_counter(), time.process_time()
        results[name] = evaluate_target(context, target_data, sets)
        timings[name], cpu[name] = time.perf_counter() - start, time.process_time() - cpu_start
        per_set = ", ".join(f"{k} {v:.1f}s" for k, v in results[name].summary["seconds"].items())
        print(f"{name:>8}: {timings[name]:7.1f} s wall, {cpu[name]:7.1f} s CPU  ({per_set})", flush=True)

    diff, key = largest_difference(results["official"].summary, results["engine"].summary)
    outputs_official, outputs_engine = probe_outputs(results["official"]), probe_outputs(results["engine"])
    differing = sum(a != b for a, b in zip(outputs_official, outputs_engine))
    print(f"target {target.number} {target.name}, model {args.model}, limit {args.limit}, {torch.get_num_threads()} threads, "
          f"items {results['engine'].summary['n_items']}")
    print(f"speed-up (official / engine): {timings['official'] / timings['engine']:.2f}x wall, {cpu['official'] / cpu['engine']:.2f}x CPU")
    print(f"largest score difference: {diff:.2e} ({key or 'none'}); probe outputs differing: {differing}/{len(outputs_engine)}")
    measured = {}
    if args.draft:
        plain, drafted_outputs = generated_outputs(results["engine"]), generated_outputs(results["drafted"])
        measured = {"drafted_speedup": timings["engine"] / timings["drafted"], "drafted_cpu_speedup": cpu["engine"] / cpu["drafted"],
                    "drafted_outputs": len(plain),
                    "drafted_outputs_differing": sum(a != b for a, b in zip(plain, drafted_outputs))}
        print(f"drafting {args.draft} tokens: {measured['drafted_speedup']:.2f}x the engine wall, {measured['drafted_cpu_speedup']:.2f}x CPU; "
              f"generated outputs differing from "
              f"the undrafted engine's: {measured['drafted_outputs_differing']}/{len(plain)}")
    if args.json:
        write_json_atomic(args.json, {**measured, "device": str(lm.device), "dtype": str(lm.dtype).removeprefix("torch."), "kernels": lm.kernels,
                                      "limit": args.limit, "seconds": timings, "cpu_seconds": cpu, "speedup": timings["official"] / timings["engine"],
                                      "cpu_speedup": cpu["official"] / cpu["engine"],
                                      "largest_difference": diff, "largest_difference_at": key,
                                      "outputs_differing": differing, "outputs": len(outputs_engine)})


if __name__ == "__main__":
    main()
