"""Unlearning: for each unit (a target, or the selected targets pooled) start from the original model, build the
corpus, run the method, evaluate with the rwku engine, and store the result beside the "before" evaluation.

Layout of an ``--out`` folder::

    <out>/before/<unit>/{summary,items}.json               the original model, evaluated once per unit
    <out>/reference/<unit>/{summary,items}.json            a planted model's base (never taught), per planted unit
    <out>/<run>/<unit>/{summary,items,train_log}.json       run = <method>[-<mode>][-<sweep>][-batch|-sequential]
    <out>/<run>/stepNN_<target>/model/                      sequential setting: the weights the step left
    <out>/<run>/<unit>/epochs/<k>/{summary,items}.json      after epoch k < last, with ``eval_epochs``
    <out>/<run>/<unit>/audits/<name>/{summary,items}.json   each audit of the unlearned model, with ``audits``
    <out>/<run>/summary.json                                mean over every stored unit with the run's settings
    <out>/comparison.json                                   Before and every method, over the units they share
    <out>/failures.json                                     units that failed, with their errors (a rerun retries them)

A unit is a target (``<N>_<Name>``) in the single-target setting, all selected targets pooled
(``batch_<first>-<last>``) in the batch setting, or one step (``stepNN_<N>_<Name>``) in the sequential setting
(:mod:`rwku.sequential`). :meth:`UnlearnJob.tasks` compiles the job into unit tasks with
declared keys (:mod:`rwku.execution.plan`); a unit stored with the same key is never recomputed, so an interrupted
run continues where it stopped. :meth:`UnlearnJob.compute` computes one unit in six steps: load, corpus, unlearn,
evaluate, audit (:mod:`rwku.audits`, when asked), and the output the driver stores.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from rwku import __version__
from rwku.audits import AuditSettings, AuditSubject, resolve_audit_settings
from rwku.audits.run import AUDIT_SETS, add_audit_key, audit_data, audit_files, control_probes, control_target
from rwku.corpus.build import RETAIN, Corpus, CorpusSpec, build_corpus, official_corpus
from rwku.corpus.coverage import NOT_KNOWLEDGE, corpus_coverage
from rwku.corpus.retain import build_retain, excluded_names, people_fingerprint
from rwku.data.loader import RwkuData
from rwku.data.schema import PASSAGE, Target, TargetData, kinds_field, pool
from rwku.errors import RwkuError
from rwku.evaluation.context import ProgressFactory, no_progress
from rwku.evaluation.engine import EvalResult, evaluate_target
from rwku.evaluation.reference import REFERENCE_RUN
from rwku.evaluation.sets import load_target, parts_of
from rwku.evaluation.sets.probes import FORGET_PART
from rwku.evaluation.settings import RunSettings
from rwku.execution.executors import Executor
from rwku.models.fingerprint import provenance
from rwku.execution.plan import UnitTask, build_plan, settings_defaults, unit_key
from rwku.execution.run import OnFailure, OnUnit, Outcome, execute
from rwku.execution.store import UnitOutput, role_means, shared_means
from rwku.methods import METHODS
from rwku.methods.base import Session, Unlearned
from rwku.methods.config import MethodSettings, ModeConfig, check_known_keys, read_config_file, resolve_settings
from rwku.methods.training import num_layers
from rwku.models.endpoint import refuse_served
from rwku.models.loading import LoadedModel
from rwku.knowledge.planting import planted_record
from rwku.io import write_json_atomic
from rwku.runner import original_model, shared_model
from rwku.sequential import SEQUENTIAL, check_sequential, step_tasks, unlearn_step

T = TypeVar("T")


@dataclass
class UnlearnJob:
    """A grid of methods over targets, in one mode and setting, with everything that decides the results.

    ``preset`` is the resolved preset name (see :func:`rwku.methods.config.choose_preset`) and ``preset_reason``
    why it was chosen; both are printed and stored.
    """

    run: RunSettings
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
    save_model: bool = False
    eval_epochs: bool = False
    sweep: dict[str, Any] = field(default_factory=dict)
    audits: Sequence[str] = ()  # registry names of the audits run on each unit's unlearned model
    audit_overrides: dict[str, Any] = field(default_factory=dict)
    out: Path = Path("runs/unlearn")
    reference: bool = True  # evaluate the never-taught reference of a planted model (REFERENCE_RUN)
    utility_steps: tuple[int, ...] = ()  # sequential setting: steps that evaluate utility besides the last
    reference_of: str | None = None  # set on a reference job: the planted model it is the reference of

    @property
    def audit_settings(self) -> AuditSettings:
        """The audits' values for the run's preset, with ``--audit-set`` overrides."""
        return resolve_audit_settings(self.preset, self.audit_overrides)[0]

    def units(self) -> list[list[Target]]:
        return [list(self.targets)] if self.setting == "batch" else [[t] for t in self.targets]

    def settings(self, method: str) -> MethodSettings:
        """The method's resolved parameters, training and corpus settings, each with its source."""
        return resolve_settings(METHODS[method], self.mode.mode, self.setting, self.preset, self.overrides,
                                self.config_file, self.sweep)

    def swept(self, method: str) -> dict[str, Any]:
        """The swept values this method takes (a grid sweeping RepE's alpha leaves GA's runs as they are)."""
        keys = self.settings(method).keys()
        return {key: value for key, value in self.sweep.items() if key in keys}

    def run_name(self, method: str) -> str:
        """``ga-lora``, ``npo-full-layers4-8``, ``repe-alpha0.5``, ``ga-lora-seed2``, ``rt-full-batch``: one folder
        per variant."""
        name = method if not METHODS[method].trains else f"{method}-{self.mode.label}"
        name += "".join(f"-{key}{value}" for key, value in self.swept(method).items())
        return name + ("" if self.setting == "single" else f"-{self.setting}")

    def eval_config(self) -> dict[str, Any]:
        config = {"model": self.run.model, **self.run.config(), "kernels": self.run.kernels}
        return {**config, "reference_of": self.reference_of} if self.reference_of else config

    def reference_job(self) -> tuple["UnlearnJob | None", set[str]]:
        """The job that evaluates the never-taught reference (the base model the job's model was planted from) and
        the planted targets' names; (None, empty) for a model without a planting record or with ``reference`` off."""
        record = planted_record(self.run.model) if self.reference else None
        if record is None:
            return None, set()
        job = dataclasses.replace(self, run=dataclasses.replace(self.run, model=record["base"]), methods=[], audits=(),
                                  eval_epochs=False, reference=False, reference_of=self.run.model)
        return job, set(record["planted"])

    def reference_tasks(self) -> list[UnitTask]:
        """A ``reference`` unit for each unit whose targets were all planted: the base model on the unit's data,
        keyed like any evaluation of the base model (computed once, reused by every later run)."""
        reference, planted = self.reference_job()
        if reference is None:
            return []
        return [UnitTask(run=REFERENCE_RUN, slug=unit_slug(unit), targets=tuple(unit), job=reference, method=None,
                         key=unit_key(reference, unit)) for unit in self.units() if all(t.name in planted for t in unit)]

    def config(self, method: str | None, epochs: bool = False) -> dict[str, Any]:
        """The readable settings a unit summary shows and the report reads (method, mode, setting, values)."""
        if method is None:
            return {**self.eval_config(), "method": "before"}
        config: dict[str, Any] = {**self.eval_config(), "method": method, "mode": dataclasses.asdict(self.mode),
                                  "setting": self.setting, "preset": self.preset, **self.settings(method).as_config()}
        if METHODS[method].trains:
            config["corpus"] = {"source": self.corpus_source, **config.get("corpus", {})}
        if self.swept(method):
            config["sweep"] = self.swept(method)
        if epochs:
            config["eval_epochs"] = True
        if self.audits:
            config["audits"] = {"names": list(self.audits), **dataclasses.asdict(self.audit_settings)}
        return config

    def method_key(self, method: str) -> dict[str, Any]:
        """The method's part of a unit key: its own parameters and, for trained methods, the mode, the training
        loop's and the corpus's settings (the corpus's inputs included); never the preset's name, only its values."""
        settings = self.settings(method)
        section: dict[str, Any] = {"name": method, "setting": self.setting, **settings.as_config()}
        if METHODS[method].trains:
            section["mode"] = dataclasses.asdict(self.mode)
            # no batch size: each corpus row draws from its own generator (under fast kernels the eval key has it)
            corpus = {"source": self.corpus_source, **section.get("corpus", {})}
            if RETAIN in METHODS[method].corpus_kinds:
                corpus["retain_people"] = people_fingerprint()  # the shipped list decides the retain texts
            section["corpus"] = corpus
        return section

    def tasks(self) -> list[UnitTask]:
        """A "before" unit per unit, then each method's units (in the sequential setting its steps), each with its
        declared key; for a planted model the reference units of its planted targets."""
        tasks = []
        for unit in self.units():
            slug = unit_slug(unit)
            tasks.append(UnitTask(run="before", slug=slug, targets=tuple(unit), job=self, method=None, key=unit_key(self, unit)))
            for method in self.methods if self.setting != SEQUENTIAL else ():
                settings = self.settings(method)
                tasks.append(UnitTask(run=self.run_name(method), slug=slug, targets=tuple(unit), job=self, method=method,
                                      key=add_audit_key(self, unit, unit_key(self, unit, self.method_key(method))),
                                      defaults=settings_defaults(settings), epochs=self.eval_epochs and METHODS[method].trains))
        if self.setting == SEQUENTIAL:
            tasks += step_tasks(self)
        return tasks + self.reference_tasks()

    def compute(self, task: UnitTask, progress: ProgressFactory) -> UnitOutput:
        if task.method is None:
            return evaluate_original(self, task, progress)
        return unlearn_step(self, task, progress) if self.setting == SEQUENTIAL else unlearn_unit(self, task, progress)


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"icu,GA*,npo"`` -> ``["icu", "ga_passage", "npo"]``; an unknown name is a one-line error."""
    names = text.split(",") if isinstance(text, str) else list(text)
    methods = [str(m).strip().lower().replace("ga*", "ga_passage") for m in names if str(m).strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise RwkuError(f"--method {','.join(map(str, names))}: unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return methods


def check_job(job: UnlearnJob, check_keys: bool = True) -> None:
    """Fail on bad settings, presets, config files, overrides or data now, before any model work.

    ``check_keys``: refuse a ``--set``, ``--config`` or sweep key that none of the job's methods takes (an
    experiment checks its shared keys against all its grids instead).
    """
    if job.setting not in ("single", "batch", SEQUENTIAL):
        raise RwkuError(f"setting {job.setting}: choose single, batch or sequential")
    if job.setting == SEQUENTIAL:
        check_sequential(job)
    refuse_served(job.run.model, "unlearning (training, and the corpus rwku samples from it)")
    if job.corpus_source not in ("generated", "official"):
        raise RwkuError(f"corpus {job.corpus_source}: choose generated or official")
    if job.corpus_source == "official":
        check_retain_available(job.methods)
    if check_keys:
        layers = {"--set": job.overrides, "sweep": job.sweep}
        if job.config_file is not None:
            layers[f"--config {job.config_file}"] = read_config_file(job.config_file)
        check_known_keys([METHODS[m] for m in job.methods], layers)
    for method in job.methods:
        job.settings(method)
    if job.audits:
        check_audits(job.audits, job.audit_settings)
    for unit in job.units():
        for target in unit:
            job.data.load(target, parts_of(job.run.sets))


def check_retain_available(methods: Sequence[str]) -> None:
    """``--corpus official`` has no retain corpus (the RWKU release ships none): a method that needs one says so."""
    needing = [m for m in methods if RETAIN in METHODS[m].corpus_kinds]
    if needing:
        raise RwkuError(f"method {', '.join(needing)}: trains on a retain corpus and --corpus official has none (the RWKU "
                        "release ships no retain texts); use --corpus generated (the model writes biographies of other people)")


def check_audits(names: Sequence[str], settings: AuditSettings) -> None:
    """Refuse audit settings this machine cannot run (bitsandbytes without its package or a GPU) before any work."""
    from rwku.audits.quantization import bitsandbytes_missing

    missing = bitsandbytes_missing() if settings.quant_backend == "bitsandbytes" else None
    if missing and {"quant8", "quant4"} & set(names):
        raise RwkuError(f"--audit-set quant_backend=bitsandbytes: {missing}; use quant_backend=torch (the default)")


def unit_slug(unit: Sequence[Target]) -> str:
    return unit[0].slug if len(unit) == 1 else f"batch_{unit[0].number}-{unit[-1].number}"


def timed(compute: Callable[[], T]) -> tuple[T, float]:
    """``compute()`` and the seconds it took."""
    start = time.perf_counter()
    value = compute()
    return value, round(time.perf_counter() - start, 3)


# ------------------------------------------------------------------ the steps of a unit: load, corpus, unlearn, evaluate, store


def load_original(job: UnlearnJob, fresh: bool = True) -> LoadedModel:
    """The original model: a fresh copy to unlearn, or the process's shared one to evaluate; a layer window it does
    not have is refused here, before any evaluation or training.

    A fresh copy first drops the shared one: a full-tuning unit of an 8B model needs the GPU's memory for itself
    (the plan puts every "before" unit first, so the shared copy has done its work by then)."""
    if fresh:
        original_model.cache_clear()
    lm = job.run.load() if fresh else shared_model(job.run)
    if any(METHODS[m].trains for m in job.methods):
        job.mode.check_fits(num_layers(lm.model))
    return lm


def load_unit(job: UnlearnJob, unit: Sequence[Target]) -> TargetData:
    """The unit's evaluation data (limited); pooled over its targets in the batch setting."""
    datas = [load_target(job.data, t, job.run.sets, job.run.limit) for t in unit]
    return datas[0] if len(datas) == 1 else pool(datas)


def unit_corpus(job: UnlearnJob, lm: LoadedModel, unit: Sequence[Target], method: str, settings: MethodSettings,
                progress: Callable[[str, int], Any]) -> Corpus:
    """The unit's training corpus: generated by the model (cached) or the release's precomputed one; each target's
    passages (GA*'s text) from the data where it has them; every part capped at ``corpus_size`` per target, then
    pooled over the unit's targets."""
    if settings.corpus is None:
        return Corpus(targets=[t.name for t in unit])
    size = settings.corpus.corpus_size
    kinds = [kind for kind in METHODS[method].corpus_kinds if kind != RETAIN]
    spec = CorpusSpec(size=size, questions=settings.corpus.question_count,
                      max_new_tokens=settings.corpus.corpus_max_new_tokens, seed=settings.train.seed, batch_size=job.run.batch_size)
    corpora = []
    for target in unit:
        if job.corpus_source == "official" and kinds:
            corpus = official_corpus(job.data, target, limit=size)
        else:
            corpus = build_corpus(lm, target, spec, kinds, prompts=job.run.prompts(lm.tokenizer), progress=progress)
        if not corpus.passage:
            corpus.passage = job.data.load(target, (), optional=(PASSAGE,))["passage"][:size]
        corpora.append(corpus)
    merged = corpora[0]
    for corpus in corpora[1:]:
        merged = merged.merged(corpus)
    if RETAIN in METHODS[method].corpus_kinds:
        merged.retain, merged.retain_dropped = build_retain(lm, spec, prompts=job.run.prompts(lm.tokenizer), progress=progress,
                                                            excluded=excluded_names(job.data, unit))
    return merged


def apply_method(job: UnlearnJob, method: str, session: Session) -> Unlearned:
    """Run the method. Seeded here with the run's seed, so training never depends on what ran before it."""
    import torch

    torch.manual_seed(session.train.seed if session.train else 0)
    return METHODS[method]().unlearn(session)


def evaluate_model(run: RunSettings, lm: LoadedModel, model: Any, preamble: str | None, data: TargetData,
                   progress: ProgressFactory) -> EvalResult:
    """Evaluate ``model`` (the original's tokenizer, the run's prompt format, ICU's preamble if any) on the unit."""
    return evaluate_target(run.context(lm, model=model, preamble=preamble, progress=progress), data, run.sets)


def unit_role(lm: LoadedModel, unit: Sequence[Target]) -> dict[str, str]:
    """``{"role": "planted" | "control"}`` when the model is a planted folder that records every target of the
    unit in that one role (``rwku plant``, ``smollm2-135m-demo``); empty otherwise. Reports show the roles apart."""
    from rwku.knowledge.planting import planted_roles

    roles = {planted_roles(lm.source).get(t.name) for t in unit}
    role = roles.pop() if len(roles) == 1 else None
    return {"role": role} if role else {}


def unit_summary(job: UnlearnJob, task: UnitTask, scores: dict, lm: LoadedModel) -> dict[str, Any]:
    """What every stored unit summary holds besides its scores: what produced them, its key, its provenance, and
    the targets' role where the model records one."""
    return {"model": job.run.model, "method": task.method or "before", "target": ", ".join(t.name for t in task.targets),
            "targets": [t.name for t in task.targets], **kinds_field(task.targets), **unit_role(lm, task.targets),
            "rwku_version": __version__,
            "protocol": job.run.protocol.name, "config": job.config(task.method, task.epochs), "key": task.key,
            "provenance": provenance(lm.device), **scores}


def train_log(corpus: Corpus, unlearned: Unlearned) -> dict[str, Any]:
    sizes = {k: len(getattr(corpus, k)) for k in ("forget", "counterfactual", "questions", "answers", "passage", RETAIN)}
    return {"corpus_source": corpus.source, "corpus_sizes": sizes, **unlearned.log}


def trained_corpora(corpus: Corpus, method: str) -> dict[str, dict[str, Any]]:
    """What a unit summary records of the corpora the method trained on: kind -> source (generated | official) and
    the number of texts (for the retain corpus also how many texts the exclusion dropped)."""
    found: dict[str, dict[str, Any]] = {}
    for kind in METHODS[method].trains_on():
        if kind == RETAIN:
            found[kind] = {"source": "generated", "texts": len(corpus.retain), "dropped": corpus.retain_dropped}
        else:
            found[kind] = {"source": "official" if kind == "passage" else corpus.source, "texts": len(getattr(corpus, kind))}
    return found


def unit_coverage(job: UnlearnJob, unit: Sequence[Target], corpus: Corpus, method: str) -> dict[str, Any] | None:
    """The share of the unit's forget-probe answers (every probe, whatever ``--limit``) that the texts the method
    trained on state in full (``rwku.corpus.coverage``; made-up, refusal and retain texts are not counted); None
    for a method that trains on no such text."""
    kinds = [kind for kind in METHODS[method].trains_on() if kind not in NOT_KNOWLEDGE]
    texts = [text for kind in kinds for text in getattr(corpus, kind)]
    if not kinds:
        return None
    answers = [probe.answer for target in unit for probe in job.data.load(target, (), optional=(FORGET_PART,))["forget"]]
    found = corpus_coverage(texts, answers, strip_punctuation=job.run.protocol.has("rouge-strip-punctuation"))
    return {**found, "kinds": kinds}


def unlearn_unit(job: UnlearnJob, task: UnitTask, progress: ProgressFactory) -> UnitOutput:
    """One unit from the original model: load, corpus, unlearn, evaluate; the driver stores the output."""
    method, unit, settings = task.method, task.targets, job.settings(task.method)
    lm = load_original(job)  # every unit starts from the original model
    data = load_unit(job, unit)
    corpus, corpus_seconds = timed(lambda: unit_corpus(job, lm, unit, method, settings, progress))
    session = Session(lm=lm, targets=list(unit), corpus=corpus, params=settings.params, mode=job.mode,
                      prompts=job.run.prompts(lm.tokenizer), progress=progress, train=settings.train)
    epoch_files: dict[str, Any] = {}
    if task.epochs:
        session.on_epoch = lambda epoch, model: epoch_files.update(evaluate_epoch(job, task, lm, model, data, epoch, progress))
    unlearned, unlearn_seconds = timed(lambda: apply_method(job, method, session))
    try:
        result = evaluate_model(job.run, lm, unlearned.model, unlearned.preamble, data, progress)
        audits = audit_unlearned(job, task, lm, unlearned, result, progress) if job.audits else {}
    finally:
        unlearned.close()
    summary = unit_summary(job, task, result.summary, lm)
    summary["seconds"] = {**summary["seconds"], "corpus": corpus_seconds, "unlearn": unlearn_seconds}
    summary["settings"] = {"preset_reason": job.preset_reason, "sources": dict(settings.sources)}
    if "runtime" in unlearned.log:  # precision, checkpointing and optimiser as the loop ran them
        summary["settings"]["runtime"] = unlearned.log["runtime"]
    if METHODS[method].trains:
        summary["corpora"] = trained_corpora(corpus, method)
        coverage = unit_coverage(job, unit, corpus, method)
        if coverage is not None:
            summary["coverage"] = {k: coverage[k] for k in ("percent", "found", "answers")}
            summary["coverage_detail"] = {k: coverage[k] for k in ("kinds", "missing")}
    if task.epochs:
        summary["epoch_points"] = sorted(int(name.split("/")[1]) for name in epoch_files if name.endswith("summary.json"))
    if audits:
        summary["audit_points"] = list(job.audits)
        summary["seconds"].update({f"audit_{name}": audits[f"audits/{name}/summary.json"]["seconds"] for name in job.audits})
    if job.save_model:  # weights are written by the process that trained them (a shared --out with Ray)
        folder = task.store(job.out).target_dir(task.slug) / "model"
        unlearned.model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
    extra = {**epoch_files, **audits, "train_log.json": train_log(corpus, unlearned)}
    return UnitOutput(summary=summary, items={"config": summary["config"], **result.items}, extra=extra)


def audit_unlearned(job: UnlearnJob, task: UnitTask, lm: LoadedModel, unlearned: Unlearned, result: EvalResult,
                    progress: ProgressFactory) -> dict[str, Any]:
    """The chosen audits on the unit's unlearned model as it was evaluated (weights, preamble, hooks), before it
    is discarded; the original model for comparison is loaded afresh (``lm.model`` may have been trained in place)."""
    control = control_target(job.data, task.targets)
    subject = AuditSubject(lm=lm, model=unlearned.model, preamble=unlearned.preamble, method=task.method,
                           data=audit_data(job.data, task.targets, job.run.limit), settings=job.audit_settings,
                           load_original=lambda: job.run.load().model,
                           control_probes=lambda: control_probes(job.data, control, job.run.limit), run=job.run,
                           progress=progress)
    for name in AUDIT_SETS:
        if name in result.items:  # the unit's own evaluation: the same probes, the same model
            subject.seed_baseline(name, result.items[name])
    return audit_files(subject, job.audits, unit_summary(job, task, {}, lm))


def evaluate_epoch(job: UnlearnJob, task: UnitTask, lm: LoadedModel, model: Any, data: TargetData, epoch: int,
                   progress: ProgressFactory) -> dict[str, Any]:
    """The model as it stands after ``epoch``, evaluated: the files of ``epochs/<epoch>``, a point of the trade-off curve."""
    result = evaluate_model(job.run, lm, model, None, data, progress)
    summary = {**unit_summary(job, task, result.summary, lm), "key": {**task.key, "epoch": epoch}, "epoch": epoch}
    return {f"epochs/{epoch}/items.json": {"config": summary["config"], "epoch": epoch, **result.items},
            f"epochs/{epoch}/summary.json": summary}


def evaluate_original(job: UnlearnJob, task: UnitTask, progress: ProgressFactory) -> UnitOutput:
    """A "before" unit: the original model on the unit's data (a ``reference`` unit: the base model's)."""
    lm = load_original(job, fresh=False)
    result = evaluate_model(job.run, lm, lm.model, None, load_unit(job, task.targets), progress)
    summary = unit_summary(job, task, result.summary, lm)
    if task.run == REFERENCE_RUN:
        summary["method"] = summary["config"]["method"] = REFERENCE_RUN
    return UnitOutput(summary=summary, items={"config": summary["config"], **result.items})


def write_comparison(job: UnlearnJob, outcome: Outcome) -> dict[str, Any]:
    """``comparison.json``: Before and every run (``rows``), each averaged over the targets all of them have stored
    (``targets``); for a planted model also per role (``roles``: the planted targets' mean, the control's), as the
    report shows them. Returns what it wrote."""
    # the reference covers planted targets only: it would shrink the targets every run shares
    units = {run: units for run, units in outcome.units.items() if run != REFERENCE_RUN}
    shared, rows = shared_means(units)
    roles = {role: {"targets": targets, "rows": means} for role, (targets, means) in role_means(units).items()}
    comparison = {"model": job.run.model, "setting": job.setting, "targets": shared, "rows": rows,
                  **({"roles": roles} if roles else {})}
    write_json_atomic(job.out / "comparison.json", comparison)
    return comparison


def run_unlearn(job: UnlearnJob, *, force: bool = False, executor: Executor | None = None, progress: ProgressFactory = no_progress,
                on_unit: OnUnit | None = None, on_failure: OnFailure | None = None) -> tuple[Outcome, dict[str, Any]]:
    """``rwku unlearn``, the command and from Python: plan the job's units, compute those not stored, compare;
    returns the outcome (stored units by run, failed units) and the comparison (``comparison.json``: its ``rows``
    by run, the shared ``targets``, a planted model's ``roles``)."""
    check_job(job, check_keys=False)
    outcome = execute(build_plan(job.out, job.tasks(), force=force), executor, progress, on_unit, on_failure)
    return outcome, write_comparison(job, outcome)
