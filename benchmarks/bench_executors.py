"""Benchmark: one small unlearning grid on the CPU with the local executor (1 and 2 torch threads) and the Ray
executor (a local 2-CPU cluster on 127.0.0.1, 2 workers of 1 thread each, one unit per worker).

Each configuration runs in a fresh process (so no model stays loaded from an earlier one) into its own fresh
folder, with its own fresh cache (``RWKU_CACHE``: the generated corpora). The default model's one-time conversion to
safetensors is done once before the timings and linked into each cache (``--cold-model``: converted in each
configuration instead, by every Ray worker at once). Wall times are of the whole process (imports, model loading,
and for Ray the cluster's start and its workers' imports); speed-ups are against the local executor at 1 thread.
Every stored unit's scores are then checked against the 1-thread local run's (every numeric summary value except
seconds).

    python benchmarks/bench_executors.py        # smollm2-135m, demo targets 1-2, icu,ga LoRA, forget+neighbor
    python benchmarks/bench_executors.py --data ../shared/rwku-data/strzar-purge --targets 1-4 --keep runs/bench-executors
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = (  # name, executor, torch threads (per unit with Ray)
    ("local-1", "local", 1),
    ("local-2", "local", 2),
    ("ray-2x1", "ray", 1),
)
#: The small preset made smaller: a corpus of 4 short texts and one epoch, so the grid takes minutes on 2 cores.
OVERRIDES = {"corpus_size": "4", "question_count": "4", "corpus_max_new_tokens": "32", "epochs": "1", "max_length": "128"}


def run_one(args: argparse.Namespace) -> None:
    """One configuration, in this (fresh) process: the grid into ``--out``; prints its run time as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from rwku.data import RwkuData
    from rwku.evaluation.settings import RunSettings
    from rwku.execution.executors import LocalExecutor, RayExecutor
    from rwku.methods.config import ModeConfig
    from rwku.unlearn import UnlearnJob, parse_methods, run_unlearn

    data = RwkuData.open([args.data])
    run = RunSettings(model=args.model, sets=tuple(args.sets.split(",")), limit=args.limit, device="cpu", dtype="float32")
    job = UnlearnJob(run=run, data=data, targets=data.select(args.targets), methods=parse_methods(args.methods),
                     mode=ModeConfig(mode=args.mode), preset="small", preset_reason="bench_executors", overrides=dict(OVERRIDES),
                     out=Path(args.out))
    if args.executor == "local":
        executor = LocalExecutor()
    else:
        executor = RayExecutor(num_cpus=2, cpus_per_unit=1, threads_per_unit=args.threads)
    start = time.perf_counter()
    outcome, _ = run_unlearn(job, executor=executor)
    print(json.dumps({"run_seconds": time.perf_counter() - start, "failed": outcome.failed,
                      "units": sum(len(s) for s in outcome.units.values())}))


def unit_scores(out: Path) -> dict[str, dict[str, float]]:
    """Every stored unit's numeric summary values except seconds (and provenance), by ``run/unit``."""
    from rwku.results import flatten

    scores = {}
    for path in sorted(out.glob("*/*/summary.json")):
        flat = flatten(json.loads(path.read_text()))
        scores[f"{path.parent.parent.name}/{path.parent.name}"] = {
            key: value for key, value in flat.items() if not key.startswith(("seconds.", "provenance."))}
    return scores


def compare(reference: dict[str, dict[str, float]], other: dict[str, dict[str, float]]) -> str:
    if set(reference) != set(other):
        return f"different units: {sorted(set(reference) ^ set(other))}"
    worst, where, differing = 0.0, "", 0
    for unit, values in reference.items():
        for key in set(values) | set(other[unit]):
            a, b = values.get(key), other[unit].get(key)
            if a == b:
                continue
            differing += 1
            diff = abs(a - b) if a is not None and b is not None else float("inf")
            if diff >= worst:
                worst, where = diff, f"{unit} {key}"
    if not differing:
        return f"identical ({len(reference)} units, {sum(len(v) for v in reference.values())} values)"
    return f"{differing} value(s) differ, largest {worst:.3g} ({where})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--targets", default="1-2")
    parser.add_argument("--methods", default="icu,ga")
    parser.add_argument("--mode", default="lora")
    parser.add_argument("--sets", default="forget,neighbor")
    parser.add_argument("--limit", type=int, default=2, help="items per part of every set (the demo has 2)")
    parser.add_argument("--cold-model", action="store_true", help="convert the default model in each configuration's cache")
    parser.add_argument("--keep", type=Path, default=None, help="keep every configuration's folder under this folder")
    parser.add_argument("--one", choices=[name for name, _, _ in CONFIGS], help=argparse.SUPPRESS)
    parser.add_argument("--executor", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-executors-")) if args.keep is None else args.keep
    if args.keep is not None:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    grid = (f"model {args.model} ({'cold' if args.cold_model else 'converted beforehand'}), data {args.data}, targets {args.targets}, methods {args.methods} ({args.mode}), "
            f"sets {args.sets}, limit {args.limit}, small preset with {OVERRIDES}")
    print(grid, flush=True)
    results = {}
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # a Ray cluster listens on 127.0.0.1 only
    try:
        if not args.cold_model:  # convert once, untimed; each fresh cache links to it
            subprocess.run([sys.executable, "-c", "import sys, rwku.knowledge; from rwku.models.loading import load_model; load_model(sys.argv[1], device='cpu')",
                            args.model], env={**base_env, "RWKU_CACHE": str(work / "model-cache")}, check=True, capture_output=True)
        for name, executor, threads in CONFIGS:
            folder = work / name
            (folder / "cache").mkdir(parents=True)
            if not args.cold_model and (work / "model-cache" / "models").is_dir():
                (folder / "cache" / "models").symlink_to(work / "model-cache" / "models")
            env = {**base_env, "RWKU_CACHE": str(folder / "cache")}
            command = [sys.executable, __file__, "--one", name, "--executor", executor, "--threads", str(threads),
                       "--out", str(folder / "out"), "--model", args.model, "--data", args.data, "--targets", args.targets,
                       "--methods", args.methods, "--mode", args.mode, "--sets", args.sets, "--limit", str(args.limit)]
            start = time.perf_counter()
            finished = subprocess.run(command, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if finished.returncode != 0:
                sys.exit(f"{name} failed:\n{finished.stderr[-4000:]}")
            report = json.loads(finished.stdout.strip().splitlines()[-1])
            if report["failed"]:
                sys.exit(f"{name}: units failed: {report['failed']}")
            results[name] = {"wall": wall, **report, "scores": unit_scores(folder / "out")}
            print(f"{name:>8}: {wall:6.1f} s wall, {report['run_seconds']:6.1f} s in the run, {report['units']} units", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    base = results["local-1"]
    print()
    print(f"{'configuration':<34} {'wall s':>7} {'run s':>7} {'speed-up':>9}  scores vs local-1")
    descriptions = {"local-1": "local, 1 thread", "local-2": "local, 2 threads", "ray-2x1": "ray, 2 workers x 1 thread (2 CPUs)"}
    for name, result in results.items():
        check = "reference" if name == "local-1" else compare(base["scores"], result["scores"])
        print(f"{descriptions[name]:<34} {result['wall']:7.1f} {result['run_seconds']:7.1f} {base['wall'] / result['wall']:8.2f}x  {check}")


if __name__ == "__main__":
    main()
