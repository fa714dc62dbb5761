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
from typing import Any, Callable, Sequence, TypeVar

from rwku import __version__
from rwku.corpus.build import Corpus, CorpusSpec, build_corpus, official_corpus
from rwku.data.loader import RwkuData
from rwku.data.schema import PASSAGE, Target, TargetData, pool
from rwku.errors import RwkuError
from rwku.evaluation.context import EvalContext
from rwku.evaluation.engine import EvalResult, evaluate_target
from rwku.evaluation.protocol import Protocol
from rwku.evaluation.sets import DEFAULT_SETS, load_target, parts_of
from rwku.methods import METHODS
from rwku.methods.base import Session, Unlearned
from rwku.methods.config import MethodSettings, ModeConfig, check_known_keys, read_config_file, resolve_settings
from rwku.methods.training import num_layers
from rwku.models.loading import LoadedModel, load_model
from rwku.models.prompting import PromptFormat
from rwku.results import ResultStore, average_summaries, write_json_atomic
from rwku.runner import same_config

T = TypeVar("T")
OnUnit = Callable[[str, str, dict, bool], None]


@dataclass
class UnlearnJob:
    """A grid of methods over targets, in one mode and setting, with everything that decides the results.

    ``preset`` is the resolved preset name (see :func:`rwku.methods.config.choose_preset`) and ``preset_reason``
    why it was chosen; both are printed and stored.
    """

    model: str
    data: RwkuData
    targets: Sequence[Target]
    methods: Sequence[str]
    mode: ModeConfig = field(default_factory=ModeConfig)
    setting: str = "single"
    preset: str = "paper"
    preset_reason: str = "--preset paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    corpus_source: str = "generated"
    sets: Sequence[str] = DEFAULT_SETS
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

    def settings(self, method: str) -> MethodSettings:
        """The method's resolved parameters, training and corpus settings, each with its source."""
        return resolve_settings(METHODS[method], self.mode.mode, self.setting, self.preset, self.overrides,
                                self.config_file, self.sweep)

    def run_name(self, method: str) -> str:
        """``ga-lora``, ``npo-full-layers4-8``, ``repe-alpha0.5``, ``rt-full-batch``: one folder per variant."""
        name = method if not METHODS[method].trains else f"{method}-{self.mode.label}"
        name += "".join(f"-{key}{value}" for key, value in self.sweep.items())
        return name + ("-batch" if self.setting == "batch" else "")

    def eval_config(self) -> dict[str, Any]:
        return {"model": self.model, "sets": list(self.sets), "limit": self.limit, "protocol": sorted(self.protocol.fixes),
                "prompt_format": self.prompt_format}

    def method_config(self, method: str) -> dict[str, Any]:
        """What a method's stored unit records, and must equal for the unit to be reused."""
        settings = self.settings(method)
        config: dict[str, Any] = {**self.eval_config(), "method": method, "mode": dataclasses.asdict(self.mode),
                                  "setting": self.setting, "preset": self.preset, **settings.as_config()}
        if METHODS[method].trains:
            config["corpus"] = {"source": self.corpus_source, **config.get("corpus", {})}
        if self.sweep:
            config["sweep"] = dict(self.sweep)
        return config


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"icu,GA*,npo"`` -> ``["icu", "ga_passage", "npo"]``; an unknown name is a one-line error."""
    names = text.split(",") if isinstance(text, str) else list(text)
    methods = [str(m).strip().lower().replace("ga*", "ga_passage") for m in names if str(m).strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise RwkuError(f"method {', '.join(map(str, names))}: unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return methods


def check_job(job: UnlearnJob, check_keys: bool = True) -> None:
    """Fail on bad settings, presets, config files, overrides or data now, before any model work.

    ``check_keys``: refuse a ``--set``, ``--config`` or sweep key that none of the job's methods takes (an
    experiment checks its shared keys against all its grids instead).
    """
    if job.setting not in ("single", "batch"):
        raise RwkuError(f"setting {job.setting}: choose single or batch")
    if job.corpus_source not in ("generated", "official"):
        raise RwkuError(f"corpus {job.corpus_source}: choose generated or official")
    if check_keys:
        layers = {"--set": job.overrides, "sweep": job.sweep}
        if job.config_file is not None:
            layers[f"--config {job.config_file}"] = read_config_file(job.config_file)
        check_known_keys([METHODS[m] for m in job.methods], layers)
    for method in job.methods:
        job.settings(method)
    for unit in job.units():
        for target in unit:
            job.data.load(target, parts_of(job.sets))


def unit_slug(unit: Sequence[Target]) -> str:
    return unit[0].slug if len(unit) == 1 else f"batch_{unit[0].number}-{unit[-1].number}"


def timed(compute: Callable[[], T]) -> tuple[T, float]:
    """``compute()`` and the seconds it took."""
    start = time.perf_counter()
    value = compute()
    return value, round(time.perf_counter() - start, 3)


# ------------------------------------------------------------------ the steps of a unit: load, corpus, unlearn, evaluate, store


def load_original(job: UnlearnJob) -> LoadedModel:
    """The original model; a layer window it does not have is refused here, before any evaluation or training."""
    lm = load_model(job.model, device=job.device, dtype=job.dtype)
    if any(METHODS[m].trains for m in job.methods):
        job.mode.check_fits(num_layers(lm.model))
    return lm


def load_unit(job: UnlearnJob, unit: Sequence[Target]) -> TargetData:
    """The unit's evaluation data (limited); pooled over its targets in the batch setting."""
    datas = [load_target(job.data, t, job.sets, job.limit) for t in unit]
    return datas[0] if len(datas) == 1 else pool(datas)


def prompt_format(job: UnlearnJob, lm: LoadedModel, preamble: str | None = None) -> PromptFormat:
    return PromptFormat(lm.tokenizer, style=job.prompt_format, preamble=preamble, single_bos=job.protocol.has("single-bos"))


def unit_corpus(job: UnlearnJob, lm: LoadedModel, unit: Sequence[Target], method: str, settings: MethodSettings,
                progress: Callable[[str, int], Any]) -> Corpus:
    """The unit's training corpus: generated by the model (cached) or the release's precomputed one; each target's
    passages (GA*'s text) from the data where it has them; every part capped at ``corpus_size`` per target, then
    pooled over the unit's targets."""
    if settings.corpus is None:
        return Corpus(targets=[t.name for t in unit])
    size, kinds = settings.corpus.corpus_size, METHODS[method].corpus_kinds
    spec = CorpusSpec(size=size, questions=settings.corpus.question_count,
                      max_new_tokens=settings.corpus.corpus_max_new_tokens, seed=settings.train.seed, batch_size=job.batch_size)
    corpora = []
    for target in unit:
        if job.corpus_source == "official" and kinds:
            corpus = official_corpus(job.data, target, limit=size)
        else:
            corpus = build_corpus(lm, target, spec, kinds, prompts=prompt_format(job, lm), progress=progress)
        if not corpus.passage:
            corpus.passage = job.data.load(target, (), optional=(PASSAGE,))["passage"][:size]
        corpora.append(corpus)
    merged = corpora[0]
    for corpus in corpora[1:]:
        merged = merged.merged(corpus)
    return merged


def apply_method(job: UnlearnJob, method: str, session: Session) -> Unlearned:
    """Run the method. Seeded here with the run's seed, so training never depends on what ran before it."""
    import torch

    torch.manual_seed(session.train.seed if session.train else 0)
    return METHODS[method]().unlearn(session)


def evaluate_model(job: UnlearnJob, lm: LoadedModel, model: Any, preamble: str | None, data: TargetData,
                   progress: Any) -> EvalResult:
    """Evaluate ``model`` (the original's tokenizer, the run's prompt format, ICU's preamble if any) on the unit."""
    ctx = EvalContext(lm=dataclasses.replace(lm, model=model), prompts=prompt_format(job, lm, preamble),
                      protocol=job.protocol, batch_size=job.batch_size, progress=progress)
    return evaluate_target(ctx, data, job.sets)


def unit_summary(job: UnlearnJob, method: str, unit: Sequence[Target], config: dict, scores: dict) -> dict[str, Any]:
    """What every stored unit summary holds besides its scores: what produced them."""
    return {"model": job.model, "method": method, "target": ", ".join(t.name for t in unit), "targets": [t.name for t in unit],
            "rwku_version": __version__, "protocol": job.protocol.name, "config": config, **scores}


def store_unit(job: UnlearnJob, store: ResultStore, slug: str, summary: dict, result: EvalResult, corpus: Corpus,
               unlearned: Unlearned, lm: LoadedModel) -> None:
    """The training log, the unlearned model if asked, then items and summary (the summary last: it marks done)."""
    sizes = {k: len(getattr(corpus, k)) for k in ("forget", "counterfactual", "questions", "passage")}
    write_json_atomic(store.target_dir(slug) / "train_log.json", {"corpus_source": corpus.source, "corpus_sizes": sizes,
                                                                  **unlearned.log})
    if job.save_model:
        unlearned.model.save_pretrained(store.target_dir(slug) / "model")
        lm.tokenizer.save_pretrained(store.target_dir(slug) / "model")
    store.save(slug, summary, {"config": summary["config"], **result.items})


def unlearn_unit(job: UnlearnJob, method: str, unit: Sequence[Target], settings: MethodSettings, config: dict,
                 store: ResultStore, slug: str, progress: Any) -> dict[str, Any]:
    """One unit from the original model: load, corpus, unlearn, evaluate, store."""
    lm = load_original(job)  # every unit starts from the original model
    data = load_unit(job, unit)
    shutil.rmtree(store.target_dir(slug) / "epochs", ignore_errors=True)  # epoch points of an older computation
    corpus, corpus_seconds = timed(lambda: unit_corpus(job, lm, unit, method, settings, progress))
    session = Session(lm=lm, targets=list(unit), corpus=corpus, params=settings.params, mode=job.mode,
                      prompts=prompt_format(job, lm), progress=progress, train=settings.train)
    if config.get("eval_epochs"):
        epochs = ResultStore(store.target_dir(slug) / "epochs")
        session.on_epoch = lambda epoch, model: evaluate_epoch(job, lm, model, method, unit, config, data, epochs, epoch, progress)
    unlearned, unlearn_seconds = timed(lambda: apply_method(job, method, session))
    try:
        result = evaluate_model(job, lm, unlearned.model, unlearned.preamble, data, progress)
    finally:
        unlearned.close()
    summary = unit_summary(job, method, unit, config, result.summary)
    summary["seconds"] = {**summary["seconds"], "corpus": corpus_seconds, "unlearn": unlearn_seconds}
    summary["settings"] = {"preset_reason": job.preset_reason, "sources": dict(settings.sources)}
    store_unit(job, store, slug, summary, result, corpus, unlearned, lm)
    return summary


def evaluate_epoch(job: UnlearnJob, lm: LoadedModel, model: Any, method: str, unit: Sequence[Target], config: dict,
                   data: TargetData, store: ResultStore, epoch: int, progress: Any) -> None:
    """Evaluate the model as it stands after ``epoch`` and store it as ``epochs/<epoch>``: a point of the trade-off curve."""
    result = evaluate_model(job, lm, model, None, data, progress)
    summary = {**unit_summary(job, method, unit, config, result.summary), "epoch": epoch}
    store.save(str(epoch), summary, {"config": config, "epoch": epoch, **result.items})


# ------------------------------------------------------------------ runs: every unit of a method, reusing stored ones


def run_units(job: UnlearnJob, name: str, out: Path, config: dict, compute: Callable[[Sequence[Target], ResultStore, str], dict],
              on_unit: OnUnit, also_accept: Sequence[dict] = ()) -> list[dict]:
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


def run_before(job: UnlearnJob, out: Path, progress: Any, on_unit: OnUnit) -> list[dict]:
    """The original model on every unit, evaluated once and reused by every method and later run."""
    config = {**job.eval_config(), "method": "before"}
    loaded: list[LoadedModel] = []  # loaded on first need: a fully stored run loads no model

    def evaluate_original(unit: Sequence[Target], store: ResultStore, slug: str) -> dict:
        if not loaded:
            loaded.append(load_original(job))
        result = evaluate_model(job, loaded[0], loaded[0].model, None, load_unit(job, unit), progress)
        summary = unit_summary(job, "before", unit, config, result.summary)
        store.save(slug, summary, {"config": config, **result.items})
        return summary

    return run_units(job, "before", out, config, evaluate_original, on_unit)


def run_method(job: UnlearnJob, method: str, out: Path, progress: Any, on_unit: OnUnit) -> list[dict]:
    """One method over every unit, each from the original model; stored units are skipped."""
    settings = job.settings(method)
    config = job.method_config(method)
    richer = [{**config, "eval_epochs": True}] if METHODS[method].trains else []
    if job.eval_epochs and richer:
        config, richer = richer[0], []
    # otherwise a unit stored with per-epoch evaluations is reused too: it has everything this run needs
    return run_units(job, job.run_name(method), out, config,
                     lambda unit, store, slug: unlearn_unit(job, method, unit, settings, config, store, slug, progress),
                     on_unit, also_accept=richer)


def run_unlearn(job: UnlearnJob, out: Path, progress: Any, on_unit: OnUnit, comparison: bool = True) -> dict[str, dict]:
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
