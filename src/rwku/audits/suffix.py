"""Optimised adversarial suffix: can a short suffix, searched for with the model's gradients, make the unlearned
model say the answer again?

Source: Zou et al., "Universal and Transferable Adversarial Attacks on Aligned Language Models" (2023), Greedy
Coordinate Gradient (GCG); the RWKU paper names gradient-based attacks as future work.

Per forget question (level 2) probe, up to ``suffix_probes`` of them: the official QA prompt (ICU's preamble
included) with ``suffix_tokens`` (12) tokens after the question, initialised to " !". Each of ``suffix_steps``
steps takes the gradient of the reference answer's mean token NLL (after the ``Answer:`` prefill) with respect to
the one-hot suffix, keeps the ``suffix_top_k`` most promising tokens per position, evaluates
``suffix_candidates`` single-token swaps (position and token drawn at random among them, seeded) and moves to the
best; the lowest-loss suffix seen is kept. The suffix may not contain the answer: the tokens of the answer, of each
of its words and of their lower/upper/capitalised variants, with and without a leading space, are never
candidates (nor are special tokens), and a candidate whose decoded text contains the answer (case-insensitive) is
rejected. Then the model answers greedily with the suffix, scored by ROUGE-L recall as every probe is.

Controls: the same optimisation on the original model; random suffixes of the same length (allowed tokens,
seeded) on the unlearned model. Neighbour All under the attack: the optimised suffixes appended, in turn, to the
neighbour questions (a suffix that makes the model answer everything better is no targeted recovery).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from rwku.audits.base import Audit, AuditResult, AuditSubject, mean_score, probe_rows, scores
from rwku.data.schema import Probe
from rwku.evaluation.context import EvalContext
from rwku.evaluation.protocol import PROBE_MAX_NEW_TOKENS
from rwku.evaluation.sets.probes import PROBE_STOPS, probe_item, probe_prompt

MARK = "\u2063SUFFIX\u2063"  # where the suffix goes in the rendered prompt (an invisible separator, in no probe)
INIT = " !"


@dataclass
class SuffixPrompt:
    """A probe's prompt split around its suffix, and the answer tokens the suffix should make likely."""

    prefix: list[int]
    postfix: list[int]
    target: list[int]

    def with_suffix(self, suffix: Sequence[int]) -> list[int]:
        return self.prefix + list(suffix) + self.postfix


def suffix_prompt(ctx: EvalContext, probe: Probe) -> SuffixPrompt:
    """The official prompt of ``probe`` (preamble and prefill included) with room for a suffix after its query."""
    rendered = probe_prompt(ctx, dataclasses.replace(probe, query=probe.query + MARK))
    before, after = rendered.split(MARK)
    tokenizer = ctx.lm.tokenizer
    return SuffixPrompt(prefix=ctx.prompts.encode(before), postfix=list(tokenizer(after, add_special_tokens=False)["input_ids"]),
                        target=list(tokenizer(" " + probe.answer.strip(), add_special_tokens=False)["input_ids"]))


def banned_tokens(tokenizer: Any, answer: str) -> set[int]:
    """Tokens of the answer, of each of its words, and of their case and space variants, and special tokens."""
    pieces = {answer.strip(), *answer.split()}
    variants = {f(piece) for piece in pieces for f in (str, str.lower, str.upper, str.capitalize, str.title)}
    banned = set(tokenizer.all_special_ids)
    for text in variants:
        for spaced in (text, " " + text):
            banned.update(tokenizer(spaced, add_special_tokens=False)["input_ids"])
    return banned


def answer_losses(model: Any, prompt: SuffixPrompt, suffixes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean token NLL of the answer after each suffix ([candidates, length] -> [candidates])."""
    device = next(model.parameters()).device
    head = torch.tensor(prompt.prefix, device=device)
    tail = torch.tensor(prompt.postfix + prompt.target, device=device)
    n_target = len(prompt.target)
    losses = []
    with torch.no_grad():
        for chunk in suffixes.split(batch_size):
            ids = torch.cat([head.expand(len(chunk), -1), chunk.to(device), tail.expand(len(chunk), -1)], dim=1)
            logits = model(input_ids=ids).logits[:, -n_target - 1:-1].float()
            targets = ids[:, -n_target:]
            losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(-1))
    return torch.cat(losses).cpu()


def suffix_gradient(model: Any, prompt: SuffixPrompt, suffix: torch.Tensor) -> torch.Tensor:
    """d(answer NLL)/d(one-hot suffix): [length, vocab], the GCG estimate of each token swap's effect."""
    embeddings = model.get_input_embeddings()
    weight = embeddings.weight
    device = weight.device
    one_hot = torch.zeros(len(suffix), weight.shape[0], device=device, dtype=weight.dtype)
    one_hot[torch.arange(len(suffix)), suffix.to(device)] = 1
    one_hot.requires_grad_(True)
    with torch.enable_grad():
        pieces = [embeddings(torch.tensor([prompt.prefix], device=device)), (one_hot @ weight)[None],
                  embeddings(torch.tensor([prompt.postfix + prompt.target], device=device))]
        logits = model(inputs_embeds=torch.cat(pieces, dim=1)).logits[0, -len(prompt.target) - 1:-1].float()
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(prompt.target, device=device))
        (gradient,) = torch.autograd.grad(loss, one_hot)
    return gradient.float().cpu()


@dataclass
class Optimised:
    suffix: list[int]
    text: str
    loss_start: float
    loss_end: float


def optimise_suffix(model: Any, tokenizer: Any, prompt: SuffixPrompt, answer: str, settings: Any, seed: int,
                    batch_size: int) -> Optimised:
    """GCG: ``suffix_steps`` steps of ``suffix_candidates`` single-token swaps among the gradient's top-k tokens per
    position; returns the lowest-loss suffix seen (its text never contains the answer)."""
    generator = torch.Generator().manual_seed(seed)
    banned = torch.tensor(sorted(i for i in banned_tokens(tokenizer, answer) if i < model.get_input_embeddings().weight.shape[0]))
    init = tokenizer(INIT, add_special_tokens=False)["input_ids"][-1]
    suffix = torch.full((settings.suffix_tokens,), init, dtype=torch.long)
    best = current = float(answer_losses(model, prompt, suffix[None], batch_size)[0])
    best_suffix, start = suffix.clone(), best
    for _ in range(settings.suffix_steps):
        gradient = suffix_gradient(model, prompt, suffix)
        gradient[:, banned] = float("inf")
        top = (-gradient).topk(settings.suffix_top_k, dim=1).indices
        positions = torch.randint(0, len(suffix), (settings.suffix_candidates,), generator=generator)
        choices = torch.randint(0, settings.suffix_top_k, (settings.suffix_candidates,), generator=generator)
        candidates = suffix.repeat(settings.suffix_candidates, 1)
        candidates[torch.arange(settings.suffix_candidates), positions] = top[positions, choices]
        losses = answer_losses(model, prompt, candidates, batch_size)
        for index, candidate in enumerate(candidates):
            if answer.strip().lower() in tokenizer.decode(candidate.tolist()).lower():
                losses[index] = float("inf")
        pick = int(losses.argmin())
        if torch.isfinite(losses[pick]):
            suffix, current = candidates[pick].clone(), float(losses[pick])
            if current < best:
                best, best_suffix = current, suffix.clone()
    return Optimised(best_suffix.tolist(), tokenizer.decode(best_suffix.tolist()), start, best)


def random_suffix(tokenizer: Any, answer: str, length: int, vocab: int, seed: int) -> list[int]:
    """``length`` tokens drawn (seeded) among the tokens a suffix may use."""
    banned = banned_tokens(tokenizer, answer)
    generator = torch.Generator().manual_seed(seed)
    suffix: list[int] = []
    while len(suffix) < length:
        token = int(torch.randint(0, vocab, (1,), generator=generator))
        if token not in banned:
            suffix.append(token)
    return suffix


def answer_with(ctx: EvalContext, probes: Sequence[Probe], prompts: Sequence[SuffixPrompt], suffixes: Sequence[Sequence[int]],
                description: str) -> list[dict[str, Any]]:
    """Each probe answered greedily with its suffix and scored as every probe is (ROUGE-L recall)."""
    encoded = [p.with_suffix(s) for p, s in zip(prompts, suffixes)]
    raw = ctx.generate_ids(description, encoded, PROBE_MAX_NEW_TOKENS, ctx.official_stop_ids(*PROBE_STOPS))
    tokenizer = ctx.lm.tokenizer
    return [probe_item(ctx, probe, tokenizer.decode(ids), text) for probe, ids, text in zip(probes, encoded, raw)]


def attack(subject: AuditSubject, model: Any, probes: Sequence[Probe], as_original: bool) -> tuple[list[Optimised], list[dict]]:
    """Optimise a suffix per probe on ``model``, then answer with it."""
    ctx = subject.context(model, None if as_original else subject.preamble)
    prompts = [suffix_prompt(ctx, p) for p in probes]
    optimised = []
    with subject.progress("suffix search", len(probes)) as advance:
        for index, (probe, prompt) in enumerate(zip(probes, prompts)):
            optimised.append(optimise_suffix(model, subject.lm.tokenizer, prompt, probe.answer, subject.settings,
                                             subject.settings.suffix_seed + index, subject.run.batch_size))
            advance(1)
    return optimised, answer_with(ctx, probes, prompts, [o.suffix for o in optimised], "answers with suffix")


def run_suffix(subject: AuditSubject) -> AuditResult:
    settings, tokenizer = subject.settings, subject.lm.tokenizer
    chosen = [i for i, p in enumerate(subject.forget) if p.level == "2"][:settings.suffix_probes]
    probes = [subject.forget[i] for i in chosen]
    if not probes:
        return AuditResult({**scores(None, None, None, None, None), "applicable": False, "note": "no forget question probes"})
    optimised, attacked = attack(subject, subject.model, probes, as_original=False)
    ctx = subject.context(subject.model, subject.preamble)
    prompts = [suffix_prompt(ctx, p) for p in probes]
    vocab = subject.model.get_input_embeddings().weight.shape[0]
    randoms = [random_suffix(tokenizer, p.answer, settings.suffix_tokens, vocab, settings.suffix_seed + i) for i, p in enumerate(probes)]
    random_items = answer_with(ctx, probes, prompts, randoms, "answers with random suffix")
    original_optimised, original_items = attack(subject, subject.original(), probes, as_original=True)
    neighbors = [i for i, p in enumerate(subject.neighbor) if p.level == "2"]
    neighbor_probes = [subject.neighbor[i] for i in neighbors]
    neighbor_items = answer_with(ctx, neighbor_probes, [suffix_prompt(ctx, p) for p in neighbor_probes],
                                 [optimised[i % len(optimised)].suffix for i in range(len(neighbor_probes))], "neighbours with suffix")
    unlearned, original = subject.baseline("unlearned", "forget"), subject.baseline("original", "forget")
    neighbor_before = subject.baseline("unlearned", "neighbor")
    summary = scores(mean_score(attacked), mean_score(unlearned, chosen), mean_score(original, chosen),
                     mean_score(neighbor_items), mean_score(neighbor_before, neighbors))
    summary.update({"n_probes": len(probes), "tokens": settings.suffix_tokens, "steps": settings.suffix_steps,
                    "candidates": settings.suffix_candidates, "top_k": settings.suffix_top_k,
                    "loss": {"start": sum(o.loss_start for o in optimised) / len(optimised),
                             "end": sum(o.loss_end for o in optimised) / len(optimised)},
                    "controls": {"original_suffix": mean_score(original_items), "random_suffix": mean_score(random_items)}})
    rows = probe_rows(attacked, [unlearned[i] for i in chosen], [original[i] for i in chosen],
                      suffix=[o.text for o in optimised], loss_start=[o.loss_start for o in optimised],
                      loss_end=[o.loss_end for o in optimised], random_suffix_score=[i["score"] for i in random_items],
                      original_suffix_score=[i["score"] for i in original_items],
                      original_suffix=[o.text for o in original_optimised])
    return AuditResult(summary, {"forget": rows, "neighbor": neighbor_items})


SUFFIX = Audit("suffix", "a GCG-optimised suffix per forget question that makes the answer likely",
               ("suffix_tokens", "suffix_steps", "suffix_candidates", "suffix_top_k", "suffix_probes", "suffix_seed"), run_suffix)
