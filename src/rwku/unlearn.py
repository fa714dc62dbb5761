"""Unlearning experiments: for each target (or pooled targets) start from the original model, build the
corpus, run the method, evaluate with the rwku engine, and store the result beside the cached "before" result.

Layout of an ``--out`` folder::

    <out>/before/<unit>/{summary,items}.json               the original model, evaluated once per unit
    <out>/<run>/<unit>/{summary,items,train_log}.json       run = <method>[-<mode>][-<sweep>][-batch]
    <out>/<run>/<unit>/epochs/<k>/{summary,items}.json      after epoch k < last, with ``eval_epochs``
    <out>/<run>/summary.json                                mean over units
    <out>/comparison.json                                   Before and every method, averaged over the units

A unit is a target (``<N>_<Name>``) in the single-target setting, or all selected targets pooled
(``batch_<first>-<last>``) in the batch setting. A unit whose summary exists with the same configuration is
never recomputed, so an interrupted run continues at the first unfinished unit.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rwku import __version__
from rwku.corpus.build import Corpus, CorpusSpec, build_corpus, official_corpus
from rwku.data.loader import RwkuData
from rwku.data.schema import Target, TargetData, pool
from rwku.errors import RwkuError
from rwku.evaluation.context import EvalContext
from rwku.evaluation.engine import evaluate_target, limit_data
from rwku.evaluation.protocol import Protocol
from rwku.methods import METHODS
from rwku.methods.base import Session
from rwku.methods.config import ModeConfig, TrainConfig, resolve_config
from rwku.models.loading import LoadedModel, load_model
from rwku.models.prompting import PromptFormat
from rwku.results import ResultStore, average_summaries, write_json_atomic
from rwku.runner import same_config


@dataclass
class UnlearnJob:
    """A grid of methods over targets, in one mode and setting, with everything that decides the results."""

    model: str
    data: RwkuData
    targets: Sequence[Target]
    methods: Sequence[str]
    mode: ModeConfig = field(default_factory=ModeConfig)
    setting: str = "single"
    preset: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    corpus_source: str = "generated"
    sets: Sequence[str] = ("forget", "neighbor", "mia", "utility")
    limit: int | None = None
    batch_size: int = 16
    protocol: Protocol = field(default_factory=Protocol)
    prompt_format: str = "chat"
    device: str = "auto"
    dtype: str = "auto"
    save_model: bool = False
    force: bool = False
    eval_epochs: bool = False
    sweep: dict[str, Any] = field(default_factory=dict)

    def units(self) -> list[list[Target]]:
        return [[t] for t in self.targets] if self.setting == "single" else [list(self.targets)]

    def train_config(self, method: str) -> TrainConfig:
        return resolve_config(method, self.mode.mode, self.setting, self.preset, {**self.overrides, **self.sweep},
                              self.config_file)

    def run_name(self, method: str) -> str:
        """``ga-lora``, ``npo-full-layers4-8``, ``repe-alpha0.5``, ``rt-full-batch``: one folder per variant."""
        name = method if not METHODS[method].trains else f"{method}-{self.mode.label}"
        name += "".join(f"-{key}{value}" for key, value in self.sweep.items())
        return name + ("-batch" if self.setting == "batch" else "")

    def eval_config(self) -> dict[str, Any]:
        return {"model": self.model, "sets": list(self.sets), "limit": self.limit, "protocol": sorted(self.protocol.fixes),
                "prompt_format": self.prompt_format}


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"icu,GA*,npo"`` -> ``["icu", "ga_passage", "npo"]``; an unknown name is a one-line error."""
    names = text.split(",") if isinstance(text, str) else list(text)
    methods = [str(m).strip().lower().replace("ga*", "ga_passage") for m in names if str(m).strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise RwkuError(f"method {', '.join(map(str, names))}: unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return methods


def check_job(job: UnlearnJob) -> None:
    """Fail on bad settings, presets, config files, overrides or data now, before any model work."""
    if job.setting not in ("single", "batch"):
        raise RwkuError(f"setting {job.setting}: choose single or batch")
    if job.corpus_source not in ("generated", "official"):
        raise RwkuError(f"corpus {job.corpus_source}: choose generated or official")
    for method in job.methods:
        job.train_config(method)
    for unit in job.units():
        for target in unit:
            job.data.load(target, job.sets)


def unit_slug(unit: Sequence[Target]) -> str:
    return unit[0].slug if len(unit) == 1 else f"batch_{unit[0].number}-{unit[-1].number}"


def load_unit(job: UnlearnJob, unit: Sequence[Target]) -> TargetData:
    datas = [limit_data(job.data.load(t, job.sets, optional=("passage",)), job.limit) for t in unit]
    return datas[0] if len(datas) == 1 else pool(datas)


def unit_corpus(job: UnlearnJob, lm: LoadedModel, unit: Sequence[Target], method: str, config: TrainConfig,
                progress: Callable[[str, int], Any]) -> Corpus:
    """The unit's training corpus: generated by the model (cached) or the release's precomputed one, pooled."""
    kinds = METHODS[method].corpus_kinds
    corpora = []
    for target in unit:
        if job.corpus_source == "official" and kinds:
            corpus = official_corpus(job.data, target, limit=config.corpus_size)
        else:
            spec = CorpusSpec(size=config.corpus_size, questions=config.question_count,
                              max_new_tokens=config.corpus_max_new_tokens, seed=config.seed, batch_size=job.batch_size)
            corpus = build_corpus(lm, target, spec, kinds, style=job.prompt_format, progress=progress)
        found = job.data.raw_records(target, "passage")
        if found is not None and not corpus.passage:
            corpus.passage = [str(r["text"]) for r in found[0]]
        corpora.append(corpus)
    merged = corpora[0]
    for corpus in corpora[1:]:
        merged = merged.merged(corpus)
    return merged


def evaluation_context(job: UnlearnJob, lm: LoadedModel, preamble: str | None, progress: Any) -> EvalContext:
    prompts = PromptFormat(lm.tokenizer, style=job.prompt_format, preamble=preamble, single_bos=job.protocol.has("single-bos"))
    return EvalContext(lm=lm, prompts=prompts, protocol=job.protocol, batch_size=job.batch_size, progress=progress)


def unit_summary(job: UnlearnJob, method: str, unit: Sequence[Target], config: dict, scores: dict) -> dict[str, Any]:
    """What every stored unit summary holds besides its scores: what produced them."""
    return {"model": job.model, "method": method, "target": ", ".join(t.name for t in unit), "targets": [t.name for t in unit],
            "rwku_version": __version__, "protocol": job.protocol.name, "config": config, **scores}


def run_units(job: UnlearnJob, name: str, out: Path, config: dict, compute: Callable[[Sequence[Target], ResultStore, str], dict],
              on_unit: Callable[[str, str, dict, bool], None], also_accept: Sequence[dict] = ()) -> list[dict]:
    """Every unit of one run: reuse a stored summary made with ``config`` (or one of ``also_accept``), else
    ``compute`` and store it."""
    store = ResultStore(out / name)
    summaries = []
    for unit in job.units():
        slug = unit_slug(unit)
        summary = store.load_summary(slug)
        reused = not job.force and any(same_config(summary, c) for c in (config, *also_accept))
        if not reused:
            summary = compute(unit, store, slug)
        summaries.append(summary)
        on_unit(name, slug, summary, reused)
    write_json_atomic(out / name / "summary.json", {"method": name, "config": config, **average_summaries(summaries)})
    return summaries


def run_before(job: UnlearnJob, out: Path, progress: Any, on_unit: Callable[[str, str, dict, bool], None]) -> list[dict]:
    """The original model on every unit, evaluated once and reused by every method and later run."""
    config = {**job.eval_config(), "method": "before"}
    loaded: list[LoadedModel] = []  # loaded on first need: a fully stored run loads no model

    def evaluate_original(unit: Sequence[Target], store: ResultStore, slug: str) -> dict:
        if not loaded:
            loaded.append(load_model(job.model, device=job.device, dtype=job.dtype))
        result = evaluate_target(evaluation_context(job, loaded[0], None, progress), load_unit(job, unit), job.sets)
        summary = unit_summary(job, "before", unit, config, result.summary)
        store.save(slug, summary, {"config": config, **result.items})
        return summary

    return run_units(job, "before", out, config, evaluate_original, on_unit)


def run_method(job: UnlearnJob, method: str, out: Path, progress: Any, on_unit: Callable[[str, str, dict, bool], None]) -> list[dict]:
    """One method over every unit, each from the original model; stored units are skipped."""
    train_config = job.train_config(method)
    config = {**job.eval_config(), "method": method, "mode": dataclasses.asdict(job.mode), "setting": job.setting,
              "preset": job.preset, "corpus": job.corpus_source, "train": dataclasses.asdict(train_config)}
    if job.sweep:
        config["sweep"] = dict(job.sweep)
    richer = [{**config, "eval_epochs": True}] if METHODS[method].trains else []
    if job.eval_epochs and richer:
        config, richer = richer[0], []
    # otherwise a unit stored with per-epoch evaluations is reused too: it has everything this run needs
    return run_units(job, job.run_name(method), out, config,
                     lambda unit, store, slug: unlearn_unit(job, method, unit, train_config, config, store, slug, progress),
                     on_unit, also_accept=richer)


def unlearn_unit(job: UnlearnJob, method: str, unit: Sequence[Target], train_config: TrainConfig, config: dict,
                 store: ResultStore, slug: str, progress: Any) -> dict[str, Any]:
    import torch

    lm = load_model(job.model, device=job.device, dtype=job.dtype)  # every unit starts from the original model
    data = load_unit(job, unit)
    shutil.rmtree(store.target_dir(slug) / "epochs", ignore_errors=True)  # epoch points of an older computation
    start = time.perf_counter()
    corpus = unit_corpus(job, lm, unit, method, train_config, progress)
    corpus_seconds = time.perf_counter() - start
    session = Session(lm=lm, targets=list(unit), corpus=corpus, config=train_config, mode=job.mode, progress=progress)
    if config.get("eval_epochs"):
        session.on_epoch = lambda epoch, model: evaluate_epoch(job, lm, model, method, unit, config, data,
                                                               ResultStore(store.target_dir(slug) / "epochs"), epoch, progress)
    start = time.perf_counter()
    # seeded here, after the corpus: writing a corpus draws random numbers and reading a cached one does not, so
    # seeding earlier made LoRA initialisation (and every result) depend on the state of the corpus cache
    torch.manual_seed(train_config.seed)
    unlearned = METHODS[method]().unlearn(session)
    unlearn_seconds = time.perf_counter() - start
    try:
        evaluated = dataclasses.replace(lm, model=unlearned.model)
        result = evaluate_target(evaluation_context(job, evaluated, unlearned.preamble, progress), data, job.sets)
    finally:
        unlearned.close()
    summary = unit_summary(job, method, unit, config, result.summary)
    summary["seconds"] = {**summary["seconds"], "corpus": round(corpus_seconds, 3), "unlearn": round(unlearn_seconds, 3)}
    write_json_atomic(store.target_dir(slug) / "train_log.json", {"corpus_source": corpus.source,
                                                                  "corpus_sizes": {k: len(getattr(corpus, k)) for k in ("forget", "counterfactual", "questions", "passage")},
                                                                  **unlearned.log})
    if job.save_model:
        unlearned.model.save_pretrained(store.target_dir(slug) / "model")
        lm.tokenizer.save_pretrained(store.target_dir(slug) / "model")
    store.save(slug, summary, {"config": config, **result.items})
    return summary


def evaluate_epoch(job: UnlearnJob, lm: LoadedModel, model: Any, method: str, unit: Sequence[Target], config: dict,
                   data: TargetData, store: ResultStore, epoch: int, progress: Any) -> None:
    """Evaluate the model as it stands after ``epoch`` and store it as ``epochs/<epoch>``: a point of the trade-off curve."""
    result = evaluate_target(evaluation_context(job, dataclasses.replace(lm, model=model), None, progress), data, job.sets)
    summary = {**unit_summary(job, method, unit, config, result.summary), "epoch": epoch}
    store.save(str(epoch), summary, {"config": config, "epoch": epoch, **result.items})


def run_unlearn(job: UnlearnJob, out: Path, progress: Any, on_unit: Callable[[str, str, dict, bool], None],
                comparison: bool = True) -> dict[str, dict]:
    """Before, then every method; returns the averaged rows ``{"before": ..., "<run>": ...}``.

    With ``comparison`` the rows are also stored as ``comparison.json`` (an experiment, which runs many jobs into
    one folder, leaves that to ``rwku report``).
    """
    rows = {"before": average_summaries(run_before(job, out, progress, on_unit))}
    for method in job.methods:
        rows[job.run_name(method)] = average_summaries(run_method(job, method, out, progress, on_unit))
    if comparison:
        write_json_atomic(out / "comparison.json", {"model": job.model, "targets": [t.name for t in job.targets],
                                                     "setting": job.setting, "rows": rows})
    return rows
