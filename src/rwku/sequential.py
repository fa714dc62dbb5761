"""Sequential unlearning (``--setting sequential``): requests that arrive one after another on the same model.

The selected targets are unlearned in their order, one step each; step k starts from the model step k−1 left
(step 1 from the original) and after it every selected target is evaluated: the ones already unlearned (does the
forgetting last?), the one just unlearned, and the ones still to come (does an earlier step already damage them?).
The utility sets run on the last step and on the steps in ``utility_steps``; the other steps evaluate the
remaining chosen sets (forget, neighbour, MIA, VerbMem).

Each step is one unit, ``<out>/<method>-<mode>-sequential/stepNN_<target>/``: its summary holds the step's own
target at the top level (as any unit) and every target's scores under ``sequential.targets``; ``model/`` holds
the weights the step left, from which the next step starts. A unit's key names the targets unlearned so far in
order (and their data), the evaluated targets' data and whether utility ran, so a stored step is reused and a kill
between steps resumes at the next step with nothing recomputed. Steps run in order in one process (the local
executor); a step whose previous step is not stored with its weights fails with one line saying so.

Every trained method and mode works. Under LoRA each step trains a fresh adapter on the model the previous step
left and merges it before the model is evaluated and stored: the next request meets exactly the model the last
one left, as a deployed model would, and the accumulated change is not capped at one adapter's rank (one growing
adapter of rank r would have to hold every target's update, so later steps would also measure a shrinking
capacity). The training corpus of each target is written by the original model (cached, the same texts as the
single-target setting), not by the partly unlearned one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rwku.data.schema import Target
from rwku.errors import RwkuError
from rwku.evaluation.engine import EvalResult
from rwku.evaluation.sets import SCORE_SECTIONS, canonical, expand, parts_of
from rwku.data.loader import data_fingerprint
from rwku.execution.key import same_key
from rwku.execution.plan import UnitTask, settings_defaults, unit_key
from rwku.execution.store import UnitOutput
from rwku.methods import METHODS
from rwku.methods.base import Session
from rwku.models.loading import LoadedModel

if TYPE_CHECKING:
    from rwku.unlearn import UnlearnJob

SEQUENTIAL = "sequential"
#: The folder in a step's unit that holds the weights (and tokenizer) the step left.
MODEL_DIR = "model"


def step_slug(step: int, target: Target) -> str:
    """``step02_2_Marie_Curie``: steps sort in order among a run's units."""
    return f"step{step:02d}_{target.slug}"


def step_number(slug: str) -> int:
    return int(slug.split("_", 1)[0].removeprefix("step"))


def with_utility(job: "UnlearnJob", step: int) -> bool:
    """Whether step ``step`` evaluates the utility sets: the last step and the chosen ``utility_steps``."""
    return step == len(job.targets) or step in job.utility_steps


def step_sets(job: "UnlearnJob", step: int) -> tuple[str, ...]:
    """The sets a step evaluates on every target: the job's sets, its utility sets only where :func:`with_utility`."""
    chosen = [s for s in expand(job.run.sets) if s.group != "utility" or with_utility(job, step)]
    return canonical(chosen)


def step_key(job: "UnlearnJob", method: str, step: int) -> dict[str, Any]:
    """Step ``step``'s key: the unit of the targets unlearned so far, in order (their data), the method, and what
    the step evaluates (every target's data, the sets)."""
    key = unit_key(dataclasses.replace(job, run=job.run.with_sets(step_sets(job, step))), job.targets[:step],
                   job.method_key(method))
    key["sequential"] = {"step": step, "evaluated": [t.name for t in job.targets],
                         "evaluated_data": data_fingerprint(job.data, job.targets, parts_of(job.run.sets))}
    return key


def step_tasks(job: "UnlearnJob") -> list[UnitTask]:
    """Each method's steps, in order (the plan keeps this order and the local executor runs it)."""
    tasks = []
    for method in job.methods:
        defaults = settings_defaults(job.settings(method))
        for step, target in enumerate(job.targets, 1):
            tasks.append(UnitTask(run=job.run_name(method), slug=step_slug(step, target), targets=(target,), job=job,
                                  method=method, key=step_key(job, method, step), defaults=defaults))
    return tasks


def check_sequential(job: "UnlearnJob") -> None:
    """Only methods that train change the weights a next step starts from; two steps need two targets."""
    untrained = [m for m in job.methods if not METHODS[m].trains]
    if untrained:
        raise RwkuError(f"--setting sequential: {', '.join(untrained)} do not train (nothing carries over to the next "
                        "step); choose trained methods such as ga, npo, rt")
    if len(job.targets) < 2:
        raise RwkuError("--setting sequential: select at least two targets (one step each)")
    outside = [n for n in job.utility_steps if not 1 <= n <= len(job.targets)]
    if outside:
        raise RwkuError(f"utility_steps {outside[0]}: give steps 1 … {len(job.targets)}")
    if job.audits or job.eval_epochs:
        raise RwkuError("--setting sequential: audits and --eval-epochs are not available here (each step's evaluation "
                        "covers every target already); run them in the single setting")


def step_dir(job: "UnlearnJob", task: UnitTask, step: int) -> Path:
    """The unit folder of step ``step`` of ``task``'s run."""
    return task.store(job.out).target_dir(step_slug(step, job.targets[step - 1]))


def starting_model(job: "UnlearnJob", task: UnitTask, original: LoadedModel) -> LoadedModel:
    """The model step ``task.step`` starts from: the original (step 1) or the weights the previous step stored,
    which must be stored complete with the previous step's key."""
    step = step_number(task.slug)
    if step == 1:
        return original
    folder = step_dir(job, task, step - 1)
    stored = task.store(job.out).load_summary(folder.name)
    if stored is None or not same_key(stored.get("key"), step_key(job, task.method, step - 1), task.defaults):
        raise RwkuError(f"{task.run}/{task.slug}: step {step - 1} ({folder.name}) is not stored with these settings; "
                        "steps run in order (use the local executor, and rerun to compute it first)")
    if not (folder / MODEL_DIR / "config.json").is_file():
        raise RwkuError(f"{folder / MODEL_DIR}: the weights step {step - 1} left are missing; rerun with --force")
    return job.run.load(str(folder / MODEL_DIR))


def merged(model: Any) -> Any:
    """The model with a LoRA adapter merged into its weights (full tuning: the model itself), frozen, in eval mode."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


def scores_of(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k in SCORE_SECTIONS}


def evaluate_step(job: "UnlearnJob", step: int, lm: LoadedModel, model: Any, progress: Any) -> dict[str, EvalResult]:
    """Every selected target on the model the step left, by slug."""
    from rwku.evaluation.sets import load_target
    from rwku.unlearn import evaluate_model

    run = job.run.with_sets(step_sets(job, step))
    return {t.slug: evaluate_model(run, lm, model, None, load_target(job.data, t, run.sets, run.limit), progress)
            for t in job.targets}


def unlearn_step(job: "UnlearnJob", task: UnitTask, progress: Any) -> UnitOutput:
    """One step: corpus (written by the original model), the method on the previous step's model, LoRA merged, every
    target evaluated, the weights stored for the next step."""
    from rwku.unlearn import apply_method, load_original, timed, train_log, trained_corpora, unit_corpus, unit_summary

    method, target, step = task.method, task.targets[0], step_number(task.slug)
    settings = job.settings(method)
    original = load_original(job)
    corpus, corpus_seconds = timed(lambda: unit_corpus(job, original, [target], method, settings, progress))
    lm = starting_model(job, task, original)
    session = Session(lm=lm, targets=[target], corpus=corpus, params=settings.params, mode=job.mode,
                      prompts=job.run.prompts(lm.tokenizer), progress=progress, train=settings.train)
    unlearned, unlearn_seconds = timed(lambda: apply_method(job, method, session))
    model = merged(unlearned.model)
    results, eval_seconds = timed(lambda: evaluate_step(job, step, lm, model, progress))
    folder = task.store(job.out).target_dir(task.slug) / MODEL_DIR
    model.save_pretrained(folder)  # before the summary: a step stored is a step whose weights are on disk
    lm.tokenizer.save_pretrained(folder)
    own = results[target.slug]
    summary = unit_summary(job, task, own.summary, lm)
    summary["sequential"] = {"step": step, "target": target.name, "order": [t.name for t in job.targets],
                             "utility": with_utility(job, step),
                             "targets": {slug: scores_of(result.summary) for slug, result in results.items()}}
    summary["seconds"] = {**summary["seconds"], "corpus": corpus_seconds, "unlearn": unlearn_seconds, "evaluate_all": eval_seconds}
    summary["settings"] = {"preset_reason": job.preset_reason, "sources": dict(settings.sources)}
    summary["corpora"] = trained_corpora(corpus, method)
    others = {f"targets/{slug}/items.json": result.items for slug, result in results.items() if slug != target.slug}
    return UnitOutput(summary=summary, items={"config": summary["config"], **own.items},
                      extra={**others, "train_log.json": train_log(corpus, unlearned)})
