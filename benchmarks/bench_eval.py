"""Benchmark: rwku's evaluation engine vs. the official way of running the same evaluation, in one process.

The official code (jinzhuoran/RWKU, ``eval_*.py`` + ``inference.py``) runs ``model.generate`` on fixed batches in
file order (forget/neighbour/TriviaQA 16, BBH/fluency 8), keeps every row of a batch going until all rows stop,
scores MMLU one prompt at a time on full-length logits, TruthfulQA in batches of 4, and MIA one text at a time.
Both runs below build the same prompts and score with the same metric functions; only the model execution
differs, so the scores must agree. Prints both times, the speed-up and the largest score difference.

    python benchmarks/bench_eval.py --data ../shared/rwku-data/strzar-purge --target 1 --limit 12
"""

from __future__ import annotations

import argparse
import time
from typing import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from rwku.data import RwkuData
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.models import PromptFormat, load_model
from rwku.models.scoring import TokenScores
from rwku.results import flatten

OFFICIAL_GENERATION_BATCH = {"forget probes": 16, "neighbor probes": 16, "BBH": 8, "TriviaQA": 16, "Fluency": 8}
OFFICIAL_TRUTHFUL_BATCH = 4


class AllRowsStopped(StoppingCriteria):
    """The official ``KeyWordsCriteria``: the batch stops only once every row ends in a stop id."""

    def __init__(self, stop_ids: Sequence[int]):
        self.stop_ids = set(stop_ids)

    def __call__(self, input_ids, scores, **kwargs):
        done = all(int(row[-1]) in self.stop_ids for row in input_ids)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class OfficialContext(EvalContext):
    """Runs the model the way the official evaluation code does (same prompts, same metrics)."""

    def generate(self, description, prompts, max_new_tokens, stop_ids):
        tokenizer, model = self.lm.tokenizer, self.lm.model
        batch_size = OFFICIAL_GENERATION_BATCH[description]
        outputs = []
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start:start + batch_size])
            encoded = tokenizer(batch, padding="longest", return_tensors="pt", add_special_tokens=True)
            generated = model.generate(
                input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, max_new_tokens=max_new_tokens,
                do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([AllRowsStopped(stop_ids)]),
            )
            for row in range(generated.shape[0]):  # blank everything from the first stop id on
                for position in range(encoded.input_ids.shape[1], generated.shape[1]):
                    if int(generated[row, position]) in stop_ids:
                        generated[row, position:] = tokenizer.pad_token_id
                        break
            texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
            heads = tokenizer.batch_decode(encoded.input_ids, skip_special_tokens=True)
            outputs += [text[len(head):] for head, text in zip(heads, texts)]
        return outputs

    def score(self, description, sequences, n_scored, vocab_moments=False):
        if description.startswith("MIA"):  # one text at a time, full logits, as eval_mia
            return [self._score_rows([s], [n], vocab_moments, pad_left=False)[0] for s, n in zip(sequences, n_scored)]
        results = []
        for start in range(0, len(sequences), OFFICIAL_TRUTHFUL_BATCH):  # score_completions, batch 4, left padding
            results += self._score_rows(sequences[start:start + OFFICIAL_TRUTHFUL_BATCH], n_scored[start:start + OFFICIAL_TRUTHFUL_BATCH], vocab_moments, pad_left=True)
        return results

    def _score_rows(self, rows, n_scored, vocab_moments, pad_left):
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
        with torch.no_grad():  # no position ids: the official helpers pass only ids and mask
            logits = self.lm.model(input_ids=ids, attention_mask=mask).logits.float()
        out = []
        for i, (row, n) in enumerate(zip(rows, n_scored)):
            lp = torch.log_softmax(logits[i, width - n - 1: width - 1], dim=-1)
            chosen = lp.gather(-1, torch.tensor(row[-n:])[:, None]).squeeze(-1)
            scores = TokenScores(chosen.tolist())
            if vocab_moments:
                p = lp.exp()
                mean = (p * lp).sum(-1)
                scores.mean = mean.tolist()
                scores.std = ((p * lp.square()).sum(-1) - mean.square()).sqrt().tolist()
            out.append(scores)
        return out

    def next_token_probs(self, description, prompts, candidates):
        results = []
        for prompt in prompts:  # eval_mmlu: batch size 1, logits of every position
            with torch.no_grad():
                logits = self.lm.model(input_ids=torch.tensor([list(prompt)])).logits[:, -1, :]
            results.append(torch.softmax(logits.float(), dim=-1)[0, list(candidates)].tolist())
        return results


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/rwku-data/strzar-purge")
    parser.add_argument("--target", default="1")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=12, help="items per part (FB, QA, AA, FM, RM, each utility set)")
    parser.add_argument("--batch-size", type=int, default=32, help="the engine's batch size")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = RwkuData.open([args.data])
    target = data.select(args.target)[0]
    sets = ("forget", "neighbor", "mia", "utility")
    target_data = load_target(data, target, sets, args.limit)
    lm = load_model(args.model, device="cpu" if not torch.cuda.is_available() else "auto")
    prompts = PromptFormat(lm.tokenizer)

    timings = {}
    results = {}
    for name, context in (("official", OfficialContext(lm=lm, prompts=prompts)),
                          ("engine", EvalContext(lm=lm, prompts=prompts, batch_size=args.batch_size))):
        start = time.perf_counter()
        results[name] = evaluate_target(context, target_data, sets)
        timings[name] = time.perf_counter() - start
        per_set = ", ".join(f"{k} {v:.1f}s" for k, v in results[name].summary["seconds"].items())
        print(f"{name:>8}: {timings[name]:7.1f} s  ({per_set})", flush=True)

    diff, key = largest_difference(results["official"].summary, results["engine"].summary)
    outputs_official = [i["output"] for i in results["official"].items["forget"] + results["official"].items["neighbor"]]
    outputs_engine = [i["output"] for i in results["engine"].items["forget"] + results["engine"].items["neighbor"]]
    differing = sum(a != b for a, b in zip(outputs_official, outputs_engine))
    print(f"target {target.number} {target.name}, model {args.model}, limit {args.limit}, {torch.get_num_threads()} threads, "
          f"items {results['engine'].summary['n_items']}")
    print(f"speed-up (official / engine): {timings['official'] / timings['engine']:.2f}x")
    print(f"largest score difference: {diff:.2e} ({key or 'none'}); probe outputs differing: {differing}/{len(outputs_engine)}")


if __name__ == "__main__":
    main()
