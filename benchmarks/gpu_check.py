"""The GPU check (scripts/gpu-check.sh): do outputs and scores stay the same at any batch size, on this machine?

The default model on one target (forget, neighbour and MIA), under each kernel mode at batch sizes 1 and 128:
``invariant`` (float32, one row per forward pass) and ``fast`` (bfloat16 on a GPU, batched). Each run's Table-1
numbers and seconds, then how many probe outputs, and how many items with every score, equal those of the
invariant run at batch 1 (so "equal across batch sizes" and "equal to float32" in one column each), then the
official-way benchmark (benchmarks/bench_eval.py: the official code's loops against the engine, same
prompts). Prints one Markdown table.

    python benchmarks/gpu_check.py --data ../shared/rwku-data/strzar-purge --target 1
    python benchmarks/gpu_check.py --data ../shared/rwku-data/strzar-purge --cpu      # a small try on a CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import rwku.knowledge  # noqa: F401  (registers smollm2-135m-demo with the loader, for --model)
from rwku.data import RwkuData
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.models import PromptFormat, load_model
from rwku.results import get_path

SETS = ("forget", "neighbor", "mia")
RUNS = (("invariant", 1), ("invariant", 128), ("fast", 1), ("fast", 128))
COLUMNS = ("forget.FB", "forget.QA", "forget.AA", "neighbor.FB", "neighbor.QA", "mia.FM", "mia.RM")


def probe_outputs(result: Any) -> list[str]:
    return [item["output"] for part in ("forget", "neighbor") for item in result.items[part]]


def scored_items(result: Any) -> list[str]:
    """Every item with all its fields (outputs and scores), as comparable text."""
    return [json.dumps(item, sort_keys=True) for part in SETS for item in result.items[part]]


def equal_count(a: list[str], b: list[str]) -> str:
    return f"{sum(x == y for x, y in zip(a, b))} / {len(a)}"


def number(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def evaluation_rows(args: argparse.Namespace, device: str) -> list[list[str]]:
    data = RwkuData.open([args.data])
    target = data.select(args.target)[0]
    target_data = load_target(data, target, SETS, args.limit)
    rows, reference, models = [], None, {}
    for kernels, batch_size in RUNS:
        if kernels not in models:
            models = {kernels: load_model(args.model, device=device, kernels=kernels)}  # one model in memory at a time
        lm = models[kernels]
        start = time.perf_counter()
        result = evaluate_target(EvalContext(lm=lm, prompts=PromptFormat(lm.tokenizer), batch_size=batch_size), target_data, SETS)
        seconds = time.perf_counter() - start
        reference = reference or result
        dtype = str(lm.dtype).removeprefix("torch.")
        rows.append([f"eval {kernels}, batch {batch_size}", f"{lm.device.type} {dtype}",
                     *(number(get_path(result.summary, column)) for column in COLUMNS),
                     equal_count(probe_outputs(result), probe_outputs(reference)),
                     equal_count(scored_items(result), scored_items(reference)), f"{seconds:.1f}"])
    return rows


def benchmark_row(args: argparse.Namespace, device: str) -> list[str]:
    """benchmarks/bench_eval.py in a child process (its own model, its own threads), read from its JSON."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        command = [sys.executable, str(Path(__file__).with_name("bench_eval.py")), "--data", args.data, "--target", args.target,
                   "--model", args.model, "--limit", str(args.bench_limit), "--device", device, "--json", str(out)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        bench = json.loads(out.read_text())
    seconds = bench["seconds"]
    return [f"official way vs engine, --limit {bench['limit']}", f"{bench['device'].split(':')[0]} {bench['dtype']}",
            *["" for _ in COLUMNS[:-1]], f"max score diff {bench['largest_difference']:.1e}",
            f"{bench['outputs'] - bench['outputs_differing']} / {bench['outputs']} (engine = official)", "",
            f"{seconds['official']:.1f} vs {seconds['engine']:.1f} ({bench['speedup']:.2f}x)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="an RWKU data folder")
    parser.add_argument("--target", default="1")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU with small limits (a try before a GPU run)")
    parser.add_argument("--limit", type=int, help="items per part in the evaluations (default: all; 2 with --cpu)")
    parser.add_argument("--bench-limit", type=int, help="items per part in the benchmark (default 12; 1 with --cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.cpu:
        args.limit = args.limit or 2
    args.bench_limit = args.bench_limit or (1 if args.cpu else 12)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU is visible; run with --cpu to try it on the CPU")
    start = time.perf_counter()
    rows = evaluation_rows(args, device) + [benchmark_row(args, device)]
    header = ["run", "device, dtype", *COLUMNS, "probe outputs = invariant b1", "items with every score = invariant b1", "seconds"]
    where = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"\n{args.model} on target {args.target} of {args.data} ({where}; evaluation --limit {args.limit or 'none'}, "
          f"sets {', '.join(SETS)}; {time.perf_counter() - start:.0f} s in all)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
