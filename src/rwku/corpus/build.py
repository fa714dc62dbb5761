"""Build (or load from cache) what a method trains on, written by the model itself about the target.

Kinds: ``forget`` (factual biographies), ``counterfactual`` (invented biographies, scrubbed), ``questions``
(questions about the target, for rejection tuning), ``answers`` (the model's own answers to those questions, the
rejected side of IdkDPO; built after ``questions``); ``retain`` (biographies of other people, the same for every
target: :mod:`rwku.corpus.retain`). Each kind is sampled as the official generation scripts do
and cached under a key of everything that decides its content (model, target, intro, prompts, prefixes,
sampling settings, size, seed, and the dtype, device kind and kernel mode it ran under), so a rerun with the same
settings reuses it. Each row draws from its own seeded generator, so the texts do not depend on the batch size.

A target that is not a person (``Target.kind``) is written about with its kind's wording and prefixes
(:data:`rwku.corpus.prompts.WORDINGS`: a description of a place, a summary of a work ...), which join its cache key;
a person's prompts and cache keys are the official ones, as they were before targets had kinds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from rwku.corpus.prompts import (
    COUNTER_SYSTEM,
    DEFAULT_PREFIXES,
    DEFAULT_REFUSALS,
    FORGET_SYSTEM,
    QUESTION_PREFILL,
    QUESTION_USER,
    WORDINGS,
    scrub_counterfactual,
)
from rwku.data.loader import RwkuData
from rwku.data.schema import PERSON, Target
from rwku.errors import RwkuError
from rwku.models.backends import make_backend
from rwku.caches import check_texts, read_cached
from rwku.models.loading import LoadedModel, cache_root
from rwku.models.prompting import PromptFormat
from rwku.io import write_json_atomic

KINDS = ("forget", "counterfactual", "questions", "answers")
RETAIN = "retain"  # a kind of no target: built once per unit by rwku.corpus.retain
#: Raised when the same settings sample other texts; what each version changed is in docs/evaluation.md ("Versions").
CORPUS_VERSION = 3


@dataclass(frozen=True)
class CorpusSpec:
    """Sizes and sampling settings of the generated corpora (official: 582 texts, 300 questions, 512 tokens).
    ``prefixes`` continue the texts about a person; a target of another kind takes its kind's (:func:`for_target`)."""

    size: int = 582
    questions: int = 300
    max_new_tokens: int = 512
    question_tokens: int = 50
    temperature: float = 1.0
    top_p: float = 0.9
    seed: int = 42
    prefixes: tuple[str, ...] = DEFAULT_PREFIXES
    refusals: tuple[str, ...] = DEFAULT_REFUSALS
    batch_size: int = 16


@dataclass
class Corpus:
    """Training material for one target (or several pooled targets in the batch setting)."""

    targets: list[str]
    forget: list[str] = field(default_factory=list)
    counterfactual: list[str] = field(default_factory=list)
    pair_prompts: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # the model's answers to ``questions``, index-aligned
    passage: list[str] = field(default_factory=list)
    source: str = "generated"
    #: the unit's retain corpus (``rwku.corpus.retain``): one per unit, set after pooling; always model-written
    retain: list[str] = field(default_factory=list)
    retain_dropped: int = 0  # retain texts left out because they mention a target or a neighbour entity of the unit

    def pairs(self) -> list[tuple[str, str, str]]:
        """DPO triples (prompt, chosen = counterfactual, rejected = factual), as in the official ``pair`` files."""
        return list(zip(self.pair_prompts, self.counterfactual, self.forget))

    def refusal_pairs(self) -> list[tuple[str, str, str]]:
        """IdkDPO triples (question, chosen = refusal, rejected = the model's own answer); empty questions or
        answers left out."""
        return [(q, r, a) for q, r, a in zip(self.questions, self.refusals, self.answers) if q.strip() and a.strip()]

    def merged(self, other: "Corpus") -> "Corpus":
        """Pool two corpora (batch-target setting)."""
        return Corpus(
            targets=self.targets + other.targets, forget=self.forget + other.forget,
            counterfactual=self.counterfactual + other.counterfactual, pair_prompts=self.pair_prompts + other.pair_prompts,
            questions=self.questions + other.questions, refusals=self.refusals + other.refusals,
            answers=self.answers + other.answers, passage=self.passage + other.passage, source=self.source if self.source == other.source else "mixed",
        )


def row_seed(seed: int, stream: str, row: int) -> int:
    """The seed of one corpus row: a hash of the run's seed, the row's stream (target and kind) and its index."""
    text = json.dumps([seed, stream, row])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


def row_generators(spec: CorpusSpec, stream: str, count: int, device: Any) -> list[torch.Generator]:
    """One generator per row, seeded by :func:`row_seed`, on the device where the model samples."""
    return [torch.Generator(device=device).manual_seed(row_seed(spec.seed, stream, row)) for row in range(count)]


def sample(lm: LoadedModel, prompts: Sequence[str], spec: CorpusSpec, max_new_tokens: int,
           on_batch: Callable[[int], None] | None = None, *, stream: str) -> list[str]:
    """Nucleus-sampled continuations (T, top-p from ``spec``), batched; cut at EOS / end of turn.

    Row i draws only from its own generator, seeded from (``spec.seed``, ``stream``, i) where ``stream`` names
    the target and kind ("Isaac Newton/forget"): a row's text does not depend on the batch size or on the other
    rows, and torch's global generators are never touched, so whether a corpus was generated or read from the
    cache changes nothing that follows.
    """
    tokenizer = lm.tokenizer
    stop_ids = [tokenizer.eos_token_id] + [i for i in [tokenizer.convert_tokens_to_ids("<|eot_id|>")] if i is not None]
    encoded = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    backend = make_backend(lm, batch_size=spec.batch_size)
    tokens = backend.sample(encoded, max_new_tokens, sorted(set(stop_ids)), row_generators(spec, stream, len(prompts), lm.device),
                            spec.temperature, spec.top_p, on_batch=on_batch)
    return [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]


def spec_payload(kind: str, spec: CorpusSpec) -> dict[str, Any]:
    """The sampling settings that decide a kind's texts (the batch size only where the run's key says so)."""
    payload = {k: v for k, v in asdict(spec).items() if k != "batch_size"}
    if kind == "questions":
        dropped: tuple[str, ...] = ("max_new_tokens",)
    elif kind == "answers":  # answers to the questions: everything that decides the questions, and the answer length
        dropped = ("refusals",)
    else:
        dropped = ("question_tokens", "questions", "refusals")
    return {k: v for k, v in payload.items() if k not in dropped}


def run_payload(lm: LoadedModel, spec: CorpusSpec) -> dict[str, Any]:
    """Where and how the model ran (dtype, device kind, kernel mode); the batch size only under ``fast`` kernels,
    the one mode whose logits may depend on the batch (rows draw from their own generators either way)."""
    payload = {"version": CORPUS_VERSION, "model": lm.source, "dtype": str(lm.dtype).removeprefix("torch."),
               "device": lm.device.type, "kernels": lm.kernels}
    if lm.kernels == "fast":
        payload["batch_size"] = spec.batch_size
    return payload


def hash_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def for_target(spec: CorpusSpec, target: Target) -> CorpusSpec:
    """The settings ``target``'s texts are sampled with: a person's as given, another kind's with its own prefixes."""
    return spec if target.kind == PERSON else replace(spec, prefixes=WORDINGS[target.kind].prefixes)


def kind_payload(target: Target) -> dict[str, Any]:
    """The target's kind and its wording's version, for a target that is not a person (a person's key has neither)."""
    return {} if target.kind == PERSON else {"target_kind": target.kind, "wording": WORDINGS[target.kind].version}


def cache_key(lm: LoadedModel, target: Target, kind: str, spec: CorpusSpec, prompts: PromptFormat) -> str:
    """What decides a cached corpus: the model and how it ran, the target (and its kind), the prompts, the sampling
    settings (``spec`` as :func:`for_target` gives it)."""
    return hash_key({**run_payload(lm, spec), "target": target.name, "intro": target.bare_intro, "kind": kind,
                     "style": prompts.style, **spec_payload(kind, spec), **kind_payload(target)})


def cached_texts(path: Path, generate: Callable[[], list[str]], record: dict[str, Any]) -> list[str]:
    """The texts stored at ``path``, or ``generate()``'s, stored there with ``record`` (what they are); a cached
    file that is not whole is moved aside with a warning and generated again (:func:`rwku.caches.read_cached`)."""
    stored = read_cached(path, check_texts, what=f"cached {record.get('kind', 'corpus')} corpus")
    if stored is not None:
        return stored
    texts = generate()
    write_json_atomic(path, {**record, "texts": texts})
    return texts


def generate_kind(lm: LoadedModel, target: Target, kind: str, spec: CorpusSpec, prompts: PromptFormat,
                  progress: Callable[[str, int], Any], questions: Sequence[str] = ()) -> list[str]:
    """Sample one kind of text about ``target`` (``answers``: one answer to each of ``questions``), with ``spec`` as
    :func:`for_target` gives it."""
    intro, name = target.bare_intro, target.name
    if kind == "answers":  # asked as the forget corpus is written: the model told it knows the target well
        system = FORGET_SYSTEM.format(intro=intro, target=name)
        with progress(f"answers · {name}", len(questions)) as advance:
            raw = sample(lm, [prompts.render(q, system=system) for q in questions], spec, spec.max_new_tokens, advance,
                         stream=f"{name}/{kind}")
        return [r.strip() for r in raw]
    if kind == "questions":
        questions = [prompts.render(QUESTION_USER.format(intro=intro, target=name)) + QUESTION_PREFILL] * spec.questions
        with progress(f"questions · {name}", len(questions)) as advance:
            raw = sample(lm, questions, spec, spec.question_tokens, advance, stream=f"{name}/{kind}")
        return [r.strip().split("\n")[0].strip() for r in raw]
    wording = WORDINGS[target.kind]
    system, user = (FORGET_SYSTEM, wording.forget_user) if kind == "forget" else (COUNTER_SYSTEM, wording.counter_user)
    base = prompts.render(user.format(target=name), system=system.format(intro=intro, target=name))
    prefixes = [spec.prefixes[i % len(spec.prefixes)] for i in range(spec.size)]
    with progress(f"{kind} corpus · {name}", len(prefixes)) as advance:
        raw = sample(lm, [base + p for p in prefixes], spec, spec.max_new_tokens, advance, stream=f"{name}/{kind}")
    texts = [p + r for p, r in zip(prefixes, raw)]
    return [scrub_counterfactual(t) for t in texts] if kind == "counterfactual" else texts


def build_corpus(lm: LoadedModel, target: Target, spec: CorpusSpec, kinds: Sequence[str], *, prompts: PromptFormat,
                 progress: Callable[[str, int], Any], cache_dir: Path | None = None) -> Corpus:
    """The requested kinds for ``target``, each generated once and then read from the cache."""
    cache_dir = cache_dir or cache_root() / "corpora"
    spec = for_target(spec, target)
    corpus = Corpus(targets=[target.name])
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown corpus kind {kind}")
        if kind == "answers" and "questions" not in kinds[:kinds.index(kind)]:
            raise ValueError("the answers corpus answers the questions: ask for questions before answers")
        path = cache_dir / f"{target.slug}-{kind}-{cache_key(lm, target, kind, spec, prompts)}.json"
        texts = cached_texts(path, lambda: generate_kind(lm, target, kind, spec, prompts, progress, corpus.questions),
                             {"target": target.name, "kind": kind, "model": lm.source, "spec": asdict(spec)})
        setattr(corpus, kind, texts)
        if kind == "questions":
            corpus.refusals = [spec.refusals[i % len(spec.refusals)] for i in range(len(texts))]
    if "counterfactual" in kinds:
        corpus.pair_prompts = pair_prompts(target, len(corpus.counterfactual))
    return corpus


def pair_prompts(target: Target, count: int) -> list[str]:
    """DPO's prompt for ``target`` (its intro, then its kind's forget request), ``count`` times."""
    return [WORDINGS[target.kind].pair_prompt.format(intro=target.bare_intro, target=target.name)] * count


def official_corpus(data: RwkuData, target: Target, limit: int | None = None) -> Corpus:
    """The precomputed corpora of the RWKU release (positive/negative/reject/passage), where the data has them."""
    corpus = Corpus(targets=[target.name], source="official")
    found_any = False
    for kind, attribute in (("positive", "forget"), ("negative", "counterfactual"), ("passage", "passage")):
        found = data.raw_records(target, kind)
        if found is not None:
            found_any = True
            setattr(corpus, attribute, [str(r["text"]) for r in found[0]][:limit])
    reject = data.raw_records(target, "reject")
    if reject is not None:
        found_any = True
        records = reject[0][:limit]
        corpus.questions = [str(r["instruction"]) for r in records]
        corpus.refusals = [str(r["output"]) for r in records]
    if not found_any:
        raise RwkuError(f"target {target.number} ({target.name}): {data.description} has no official corpora "
                        "(positive/negative/reject/passage); use --corpus generated")
    if corpus.forget and corpus.counterfactual:  # pairs are aligned by index
        n = min(len(corpus.forget), len(corpus.counterfactual))
        corpus.forget, corpus.counterfactual = corpus.forget[:n], corpus.counterfactual[:n]
    corpus.pair_prompts = pair_prompts(target, len(corpus.counterfactual))
    return corpus
