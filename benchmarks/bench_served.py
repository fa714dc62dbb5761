"""Benchmark: the served backend (``--model openai:NAME``) against the ``hf`` backend, item by item, and the
loopback server's throughput at several numbers of concurrent requests.

Starts ``rwku serve``'s server in this process on 127.0.0.1 (a free port) with ``--model``, evaluates the target
twice, once with the ``hf`` backend on the model loaded here and once through the server, and reports what
differs: generated texts (forget and neighbour probes, BBH, TriviaQA, fluency), MMLU letters and TruthfulQA
choices, the largest difference of a per-text MIA score and of any summary score. ``--throughput`` instead times
generation requests (the forget probes, repeated to ``--requests``) at each ``--concurrency``. The server runs
under invariant kernels, so the goal of the comparison is no differing output and score differences of float
noise at most (MIA per text within 1e-4).

    python benchmarks/bench_served.py --target 1 --limit 2 --threads 1
    python benchmarks/bench_served.py --target 1 --limit 0 --threads 2 --json served.json
    python benchmarks/bench_served.py --throughput --concurrency 1,4,16 --requests 32 --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from pathlib import Path

import torch
from bench_eval import flatten_items, generated_outputs, largest_difference

from rwku.data import RwkuData
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.evaluation.protocol import PROBE_MAX_NEW_TOKENS
from rwku.evaluation.sets.probes import PROBE_STOPS, probe_prompt
from rwku.models import PromptFormat, load_model
from rwku.models.backends import make_backend
from rwku.models.endpoint import ServedOptions
from rwku.io import write_json_atomic
from rwku.serving import ServedModels, load_served_models, make_server


def start_server(model: str, batch_size: int) -> tuple[object, str]:
    """``rwku serve --model MODEL --port 0`` in a thread; returns the server and its base URL."""
    server = make_server(ServedModels(load_served_models(model, None, {}), batch_size=batch_size), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/v1"


def mia_differences(hf_items: dict, served_items: dict) -> tuple[float, str, int]:
    """The largest difference of a per-text MIA score (NLL and every attack), where, and texts compared."""
    worst, where, texts = 0.0, "", 0
    for mine, theirs in zip(hf_items.get("mia", []), served_items.get("mia", [])):
        texts += 1
        pairs = {"nll": (mine["nll"], theirs["nll"])} | {k: (v, theirs["attacks"].get(k)) for k, v in mine["attacks"].items()}
        for name, (a, b) in pairs.items():
            if b is None or (math.isnan(a) and math.isnan(b)):
                continue
            if abs(a - b) > worst:
                worst, where = abs(a - b), f"{mine['set']} text {texts}: {name}"
    return worst, where, texts


def choices_differing(hf_items: dict, served_items: dict, name: str) -> tuple[int, int]:
    mine = hf_items.get("utility", {}).get(name, [])
    theirs = served_items.get("utility", {}).get(name, [])
    return sum(a["output"] != b["output"] for a, b in zip(mine, theirs)), len(mine)


def compare(args: argparse.Namespace, lm, served) -> dict:
    data = RwkuData.open([args.data])
    target = data.select(args.target)[0]
    sets = tuple(args.sets.split(","))
    target_data = load_target(data, target, sets, args.limit or None)
    results, seconds = {}, {}
    for name, model in (("hf", lm), ("served", served)):
        start = time.perf_counter()
        results[name] = evaluate_target(EvalContext(lm=model, prompts=PromptFormat(model.tokenizer), batch_size=args.batch_size),
                                        target_data, sets)
        seconds[name] = time.perf_counter() - start
        print(f"{name:>6}: {seconds[name]:7.1f} s wall", flush=True)
    hf, srv = results["hf"], results["served"]
    texts, theirs = generated_outputs(hf), generated_outputs(srv)
    differing = [(i, a, b) for i, (a, b) in enumerate(zip(texts, theirs)) if a != b]
    items_hf, items_srv = flatten_items(hf), flatten_items(srv)
    differing_items = sum(a != b for part, rows in items_hf.items() for a, b in zip(rows, items_srv.get(part, [])))
    mia_diff, mia_where, mia_texts = mia_differences(hf.items, srv.items)
    score_diff, score_where = largest_difference(hf.summary, srv.summary)
    mmlu = choices_differing(hf.items, srv.items, "mmlu")
    truthful = choices_differing(hf.items, srv.items, "truthful")
    print(f"target {target.number} {target.name}, {args.model}, limit {args.limit or 'none'}, {torch.get_num_threads()} threads")
    print(f"generated texts differing: {len(differing)}/{len(texts)}; MMLU letters differing: {mmlu[0]}/{mmlu[1]}; "
          f"TruthfulQA choices differing: {truthful[0]}/{truthful[1]}; items differing at all: {differing_items}")
    print(f"largest per-text MIA difference: {mia_diff:.2e} ({mia_where or 'none'}, {mia_texts} texts); "
          f"largest summary score difference: {score_diff:.2e} ({score_where or 'none'})")
    for index, mine, other in differing[:5]:
        print(f"  text {index}: hf {mine[:80]!r}\n          served {other[:80]!r}")
    return {"seconds": seconds, "texts": len(texts), "texts_differing": len(differing), "items_differing": differing_items,
            "mmlu_differing": mmlu[0], "mmlu": mmlu[1], "truthful_differing": truthful[0], "truthful": truthful[1],
            "mia_largest_difference": mia_diff, "mia_at": mia_where, "largest_score_difference": score_diff,
            "largest_score_difference_at": score_where}


def throughput(args: argparse.Namespace, lm, spec: str) -> dict:
    """Generation requests (forget probes) at each concurrency: requests and generated tokens per second."""
    data = RwkuData.open([args.data])
    target = data.select(args.target)[0]
    ctx = EvalContext(lm=lm, prompts=PromptFormat(lm.tokenizer))
    texts = [probe_prompt(ctx, probe) for probe in load_target(data, target, ("forget",), None)["forget"]]
    encoded = [ctx.prompts.encode(t) for t in (texts * (args.requests // max(len(texts), 1) + 1))[:args.requests]]
    stop_ids = ctx.official_stop_ids(*PROBE_STOPS)
    measured = {}
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        served = load_model(spec, served=ServedOptions(concurrency=concurrency))
        backend = make_backend(served)
        start = time.perf_counter()
        tokens = backend.generate("throughput", encoded, PROBE_MAX_NEW_TOKENS, stop_ids)
        wall = time.perf_counter() - start
        generated = sum(len(t) for t in tokens)
        measured[concurrency] = {"seconds": wall, "requests_per_s": len(encoded) / wall, "tokens_per_s": generated / wall}
        print(f"concurrency {concurrency:>3}: {len(encoded)} requests in {wall:6.1f} s, {len(encoded) / wall:5.2f} requests/s, "
              f"{generated / wall:6.1f} generated tokens/s", flush=True)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/rwku-data/strzar-purge")
    parser.add_argument("--target", default="1")
    parser.add_argument("--model", default="smollm2-135m", help="the local model both sides run (the server loads its own copy)")
    parser.add_argument("--limit", type=int, default=2, help="items per part; 0: all")
    parser.add_argument("--sets", default="forget,neighbor,mia,utility")
    parser.add_argument("--batch-size", type=int, default=32, help="the hf backend's and the server's batch size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--throughput", action="store_true", help="time generation requests instead of comparing")
    parser.add_argument("--concurrency", default="1,4,16", help="with --throughput: concurrent requests, comma-separated")
    parser.add_argument("--requests", type=int, default=32, help="with --throughput: generation requests per concurrency")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    server, url = start_server(args.model, args.batch_size)
    os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"] = url, "local"
    spec = f"openai:{args.model}"
    lm = load_model(args.model)
    print(f"server: rwku serve --model {args.model} on {url} (hf backend, invariant kernels, float32, batch size {args.batch_size})")
    try:
        measured = throughput(args, lm, spec) if args.throughput else compare(args, lm, load_model(spec))
    finally:
        server.shutdown()
    if args.json:
        write_json_atomic(args.json, {**measured, "model": args.model, "target": args.target, "limit": args.limit,
                                      "threads": torch.get_num_threads()} if not args.throughput else
                          {"concurrency": measured, "model": args.model, "requests": args.requests, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
