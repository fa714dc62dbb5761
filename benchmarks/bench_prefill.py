"""Benchmark: prompt chunks under invariant kernels, fixed 128-token blocks against chunks that end at line ends.

Reads the prompts of a stored evaluation (``items.json`` of ``rwku eval ... --out DIR``: every item keeps its
rendered prompt), tokenizes them as the evaluation does (no special tokens added) and orders each set as the
engine does (:func:`rwku.models.decoding.prefill.prefix_sorted_batches`). For every set it prints the fraction of prompt
tokens a row copies from the row before it: the ideal (their exact common prefix), what 128-token blocks reuse
(the rule before chunks) and what each chunk rule ``FIRST:BLANK:NEWLINE:LONGEST`` reuses
(:class:`rwku.models.decoding.prefill.ChunkRule`), with the passes a row runs. Then it prefills the prompts of the
``--timed`` sets through :class:`rwku.models.decoding.prefill.RowPrefiller` under each rule, one row per pass as the
invariant backend does, and prints wall and CPU seconds and their ratios against the 128-token blocks measured
in the same run.

    nice -n 10 python benchmarks/bench_prefill.py --items /tmp/fulleval/out/1_Stephen_King/items.json --threads 1 --limit 40

takes 4 min 50 s here (target 1: MMLU 0.93x and BBH 0.93x the blocks' CPU seconds; 32:32:32:256 1.09x and 1.13x).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import torch

import rwku.knowledge  # noqa: F401  (registers smollm2-135m-demo with the loader, for --model)
from rwku.models import load_model
from rwku.models.decoding.prefill import (
    ChunkRule,
    LineEnds,
    RowPrefiller,
    chunk_ends,
    common_prefix_length,
    prefix_sorted_batches,
)

#: The rule before chunks: fixed blocks of 128 tokens (no line ends).
BLOCKS = ChunkRule(longest=128)


def set_prompts(items: dict) -> dict[str, list[str]]:
    """Every set's prompt texts in stored order (the utility sets under their own names)."""
    sets = {name: [item["prompt"] for item in items.get(name, [])] for name in ("forget", "neighbor")}
    for name, rows in items.get("utility", {}).items():
        sets[name] = [item["prompt"] for item in rows if "prompt" in item]
    return {name: prompts for name, prompts in sets.items() if prompts}


def engine_order(rows: Sequence[Sequence[int]]) -> list[list[int]]:
    """The rows in the order the invariant backend runs them (one row per pass)."""
    return [list(rows[i]) for batch in prefix_sorted_batches(rows, 1) for i in batch]


def line_ends_for(rule: ChunkRule, line_ends: LineEnds) -> LineEnds:
    return LineEnds() if rule == BLOCKS else line_ends


def reuse(rows: Sequence[Sequence[int]], rule: ChunkRule, line_ends: LineEnds) -> tuple[int, int]:
    """Prompt tokens copied from the previous row's cache under ``rule``, as RowPrefiller copies them, and the
    passes run (chunks computed plus each row's final pass)."""
    reused = passes = 0
    previous, previous_ends = [], []
    for row in rows:
        ends = chunk_ends(row, first_needed=len(row) - 1, line_ends=line_ends_for(rule, line_ends), rule=rule)
        shared, copied = common_prefix_length([previous, row]) if previous else 0, 0
        for end, previous_end in zip(ends, previous_ends):
            if end != previous_end or end > shared:
                break
            copied += 1
        reused += ends[copied - 1] if copied else 0
        passes += len(ends) - copied + 1
        previous, previous_ends = row, ends
    return reused, passes


def ideal_tokens(rows: Sequence[Sequence[int]]) -> int:
    """Prompt tokens a row shares with the previous one (an upper bound for any chunking)."""
    return sum(common_prefix_length([a, b]) for a, b in zip(rows, rows[1:]))


def timed_prefill(model, rows: Sequence[Sequence[int]], rule: ChunkRule, line_ends: LineEnds) -> tuple[float, float]:
    """Wall and CPU seconds to prefill ``rows`` one per pass (the next-token logits only, as MMLU scores)."""
    prefiller = RowPrefiller(model, line_ends_for(rule, line_ends), rule)
    wall, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        prefiller(row, keep=1, needed_from_end=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def label(rule: ChunkRule) -> str:
    return "128-blk" if rule == BLOCKS else f"{rule.first}:{rule.blank_line}:{rule.newline}:{rule.longest}"


def parse_rule(text: str) -> ChunkRule:
    return ChunkRule(*(int(n) for n in text.split(":")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=Path, required=True, help="items.json of a stored evaluation")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="time only the first N prompts of each timed set")
    parser.add_argument("--rules", default="16:32:128:512,32:32:32:256,128:128:128:512",
                        help="chunk rules FIRST:BLANK:NEWLINE:LONGEST (ChunkRule) to compare with 128-token blocks")
    parser.add_argument("--timed", default="mmlu,bbh", help="sets whose prefill is timed")
    parser.add_argument("--time-rules", default="16:32:128:512,32:32:32:256", help="rules to time (besides 128-token blocks)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, device="cpu")
    line_ends = LineEnds.of(lm.tokenizer)
    rules = [parse_rule(r) for r in args.rules.split(",")]
    sets = set_prompts(json.loads(args.items.read_text(encoding="utf-8")))
    encoded = {name: [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts] for name, prompts in sets.items()}

    print("fraction of prompt tokens copied from the row before (engine order) / passes per row")
    print(f"{'set':<10} {'rows':>5} {'mean':>6} {'ideal':>6} " + " ".join(f"{label(r):>16}" for r in [BLOCKS, *rules]))
    for name, rows in encoded.items():
        ordered = engine_order(rows)
        total = sum(len(r) for r in ordered)
        cells = []
        for rule in [BLOCKS, *rules]:
            reused, passes = reuse(ordered, rule, line_ends)
            cells.append(f"{reused / total:.2f} / {passes / len(rows):4.1f}")
        print(f"{name:<10} {len(rows):>5} {total / len(rows):>6.0f} {ideal_tokens(ordered) / total:>6.2f} "
              + " ".join(f"{c:>16}" for c in cells))

    timed_rules = [BLOCKS] + [parse_rule(r) for r in args.time_rules.split(",")]
    print(f"\nprefill seconds, one row per pass, {args.threads} thread(s); ratio against 128-token blocks")
    for name in filter(None, args.timed.split(",")):
        ordered = engine_order(encoded[name][: args.limit])
        timed_prefill(lm.model, ordered[:2], BLOCKS, line_ends)  # warm up
        base = None
        for rule in timed_rules:
            wall, cpu = timed_prefill(lm.model, ordered, rule, line_ends)
            base = base or (wall, cpu)
            print(f"{name:<9} {len(ordered):>4} rows {label(rule):>16}: wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
                  f"ratio wall {wall / base[0]:.2f} cpu {cpu / base[1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
