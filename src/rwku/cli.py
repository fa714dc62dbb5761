"""The ``rwku`` command line: ``rwku eval``, ``unlearn``, ``experiment``, ``audit``, ``report``, ``memorization``,
``build-target``, ``plant``, ``cache`` and ``data info``.

User mistakes (:class:`RwkuError`, a bad option value) are one line and exit 2; SIGINT and SIGTERM one line saying
what was kept and exit 130 or 143 (``main``; ``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table

from rwku.errors import RwkuError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark real-world knowledge unlearning (RWKU).")
data_app = typer.Typer(no_args_is_help=True, help="Inspect RWKU data.")
app.add_typer(data_app, name="data")
console = Console()
STATE: dict[str, Any] = {"debug": False}

DATA_HELP = "RWKU data: a folder (per-target dirs and/or merged All/ files), 'demo', or 'hf:jinzhuoran/RWKU'. Repeat to combine."


@app.callback()
def root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")) -> None:
    STATE["debug"] = debug


def split_values(values: list[str] | None) -> list[str]:
    """Repeated options may also be comma-joined (paths with commas: repeat the option instead)."""
    out: list[str] = []
    for value in values or []:
        out.extend(v for v in (value.split(",") if not Path(value).exists() else [value]) if v)
    return out


SETS_HELP = ("Comma-separated sets or groups: forget, neighbor, mia, mmlu, bbh, truthful, triviaqa, fluency, utility (the last five), "
             "all (every set but verbmem), verbmem (verbatim memorization, opt-in: all,verbmem).")


#: The legend of a row marked ``*`` (shown only under a table that has one)
STORED_LEGEND = "* stored result of an earlier run with the same settings"


def table1(title: str, first_column: str = "target", columns: Any = None) -> Table:
    """The Table-1 columns (or ``columns``: the report's, with coverage and the RWKU score) under their groups, with
    arrows."""
    from rwku.evaluation.sets import TABLE1_COLUMNS

    table = Table(title=title, title_justify="left", caption_justify="left")
    table.add_column(first_column, no_wrap=True)
    previous = ""
    for column in columns or TABLE1_COLUMNS:
        heading = column.group if column.group != previous else ""
        table.add_column(f"{heading}\n{column.label}{'↓' if column.lower_is_better else '↑'}", justify="right", no_wrap=True)
        previous = column.group
    return table


def table1_row(summary: dict[str, Any]) -> list[str]:
    from rwku.evaluation.table1 import table1_cells

    return list(table1_cells(summary).values())


#: How the printed comparison names each role of a planted model's targets.
ROLE_TITLES = {"planted": "planted targets", "control": "control (not planted: as the base model knows it)"}


def print_comparison(title: str, rows: dict[str, dict[str, Any]]) -> None:
    """One comparison table: a row per run (its mean summary) with the report's Table-1 columns (corpus coverage
    beside forget All, the RWKU score last)."""
    from rwku.report.table import COLUMNS
    from rwku.results import get_path

    table = table1(title, "run", columns=COLUMNS)
    for name, row in rows.items():
        table.add_row(name, *["-" if (v := get_path(row, c.path)) is None else f"{v:.1f}" for c in COLUMNS])
    left_out = max((row.get("rwku_score", {}).get("left_out", 0) for row in rows.values()), default=0)
    if left_out:
        table.caption = (f"RWKU score: harmonic mean of efficacy, locality and utility; {left_out} target(s) left out "
                         "(forget All before under 5, or the neighbor or utility sets not evaluated)")
    Console(width=max(console.width, 170)).print(table)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (left to torch when not given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def one_of(*allowed: str) -> Any:
    """A typer callback refusing a word outside ``allowed`` as the option's one-line error (exit 2), before any work."""
    def check(value: Any) -> Any:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"choose {', '.join(allowed[:-1])} or {allowed[-1]}")
        return value

    return check


def folder_path(value: Path | None) -> Path | None:
    """``--out``: a folder, new or existing; an existing file is the option's one-line error."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter("is a file; give a folder")
    return value


def matching(pattern: str, expected: str) -> Any:
    """A typer callback refusing a value that does not match ``pattern`` (``expected`` says what would)."""
    import re

    def check(value: Any) -> Any:
        if value is not None and not re.fullmatch(pattern, value):
            raise typer.BadParameter(f"expected {expected}")
        return value

    return check


#: --device: auto, cpu, mps, cuda or cuda:N
DEVICE_CHECK = matching(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, mps, cuda or cuda:N")
#: Where units run: the same options for rwku eval, unlearn and experiment
EXECUTOR_OPTION = typer.Option("local", "--executor", callback=one_of("local", "ray"), help="local (in this process, one unit after another) or ray (units as Ray tasks: every GPU of this machine, or a cluster).")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address", callback=matching(r"auto|(ray://)?[\w.\-]+:\d+", "auto, ray://host:port or host:port"), help="auto or ray://host:port (default: start a local cluster).")
GPUS_PER_UNIT_OPTION = typer.Option(0.0, "--gpus-per-unit", min=0, help="GPUs a unit asks Ray for (1 on a GPU machine).")
CPUS_PER_UNIT_OPTION = typer.Option(1.0, "--cpus-per-unit", min=0, help="CPUs a unit asks Ray for.")
THREADS_OPTION = typer.Option(None, "--threads", min=1, help="torch CPU threads (per unit with --executor ray).")
MAX_RETRIES_OPTION = typer.Option(1, "--max-retries", min=0, help="Retries of a failed unit (and of a lost Ray worker).")
#: How a model runs and is evaluated: the options every command that runs one shares (experiment files take the same
#: keys). Each becomes a field of :class:`rwku.evaluation.settings.RunSettings` through :func:`run_settings`, with the
#: same default (tests/test_run_settings.py checks they agree); the CLI does not import it here, which would load torch
#: for ``rwku --help``.
TARGETS_OPTION = typer.Option("all", "--targets", "-t", help="Numbers, ranges and names: 1, 1-10, 'Stephen King', all (the default: every target of --data, the whole benchmark; 1 for a quick look).")
SETS_OPTION = typer.Option("all", "--sets", help=SETS_HELP)
LIMIT_OPTION = typer.Option(None, "--limit", min=1, help="Keep the first N items of every evaluation part (quick runs).")
KERNELS_OPTION = typer.Option("invariant", "--kernels", help="invariant (float32, no TF32, one row per forward pass: every output and score the same at any --batch-size and --limit) or fast (batched; bf16 on a GPU with --dtype auto: outputs may change with the batch, whose size then joins the cache key).")
DTYPE_OPTION = typer.Option("auto", "--dtype", help="auto (float32 under --kernels invariant; under fast bf16 on a GPU, fp32 on a CPU), float32, bfloat16, float16 (half precision needs --kernels fast).")
BATCH_SIZE_OPTION = typer.Option(32, "--batch-size", min=1, help="Rows per forward pass (outputs and scores do not depend on it under --kernels invariant).")
DEVICE_OPTION = typer.Option("auto", "--device", callback=DEVICE_CHECK, help="auto, cpu, cuda, cuda:1 ...")
PROMPT_FORMAT_OPTION = typer.Option("chat", "--prompt-format", callback=one_of("chat", "plain"), help="chat (the model's template) or plain (models without one).")
FIX_OPTION = typer.Option([], "--fix", help="Switch on a named fix of an official quirk (see docs/protocol.md); repeatable.")
AUDIT_OPTION = typer.Option("", "--audit", help="Audits of each unlearned model, comma-separated: quant8, quant4, relearn, suffix, logit_lens, all.")
AUDIT_SET_OPTION = typer.Option([], "--audit-set", help="Override an audit setting key=value (suffix_steps=50, relearn_lr=1e-4 ...); repeatable.")


def key_values(items: list[str], option: str) -> dict[str, str]:
    """``["lr=1e-5", "epochs=2"]`` -> a dict; an item without ``=`` is a one-line error naming ``option``."""
    parsed: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise RwkuError(f"{option} {item}: expected key=value")
        key, value = item.split("=", 1)
        parsed[key.strip()] = value.strip()
    return parsed


def run_settings(*, model: str, limit: int | None, batch_size: int, device: str, dtype: str, kernels: str,
                 sets: str = "all", prompt_format: str = "chat", fix: Sequence[str] = (), **served: Any) -> Any:
    """The :class:`~rwku.evaluation.settings.RunSettings` the shared options give (a bad set, fix or prompt format
    is one line here, before any data or model is read); ``served``: ``tokenizer`` and ``served`` for openai:NAME."""
    from rwku.evaluation import Protocol
    from rwku.evaluation.sets import parse_sets
    from rwku.evaluation.settings import RunSettings
    from rwku.models.prompting import check_style

    check_style(prompt_format)
    return RunSettings(model=model, sets=parse_sets(sets), limit=limit, protocol=Protocol.from_names(split_values(list(fix))),
                       prompt_format=prompt_format, device=device, dtype=dtype, kernels=kernels, batch_size=batch_size,
                       **served)


def unit_printer(progress: Any) -> Any:
    """``on_unit`` of the driver: one line per unit stored (or found stored), with where it ran."""
    from rwku.evaluation.table1 import table1_cells

    def show(task: Any, summary: dict[str, Any], reused: bool, where: str) -> None:
        cells = table1_cells(summary)
        seconds = sum(v for v in (summary.get("seconds") or {}).values() if isinstance(v, (int, float)))
        origin = " (stored)" if reused else f" · {where} · {seconds:.0f} s"
        progress.console.print(f"[green]✓[/] {task.name}{origin} · forget All {cells['forget.All']}, "
                               f"neighbor All {cells['neighbor.All']}", highlight=False)

    return show


def failure_printer(progress: Any) -> Any:
    def show(task: Any, failure: Any) -> None:
        progress.console.print(f"[red]✗[/] {task.name} · failed after {failure.attempts} attempt(s): {failure.error}",
                               highlight=False)

    return show


def make_executor(executor: str, ray_address: str | None, gpus_per_unit: float, cpus_per_unit: float, max_retries: int,
                  threads: int | None) -> Any:
    from rwku.execution.executors import LocalExecutor, RayExecutor

    if executor == "local":
        return LocalExecutor(max_retries=max_retries, gpus_per_unit=gpus_per_unit)
    if executor == "ray":
        return RayExecutor(address=ray_address, gpus_per_unit=gpus_per_unit, cpus_per_unit=cpus_per_unit,
                           max_retries=max_retries, threads_per_unit=threads)
    raise RwkuError(f"--executor {executor}: choose local or ray")


def print_plan(plan: Any) -> None:
    """Per run: how many units are stored and how many will run, and why (new, stale and what changed, forced),
    and the GPU memory a unit needs at its peak (training or evaluation, whichever is larger: execution/resources.py)."""
    from rwku.execution.resources import unit_memory_gib

    table = Table(title=f"plan: {len(plan.tasks)} unit(s) in {plan.out}, {len(plan.to_run())} to run", title_justify="left",
                  caption="GiB: estimated peak GPU memory per unit (training or evaluation); ask Ray for enough with --gpus-per-unit",
                  caption_justify="left")
    for column in ("run", "units", "stored", "to run", "GiB", "why"):
        table.add_column(column, overflow="fold")
    for run, tasks in plan.runs().items():
        reasons: dict[str, int] = {}
        for task in tasks:
            status = plan.status[task.name]
            if status != "stored":
                reasons[status] = reasons.get(status, 0) + 1
        stored = sum(plan.status[t.name] == "stored" for t in tasks)
        why = "; ".join(f"{n} {reason}" for reason, n in reasons.items())
        memory = unit_memory_gib(tasks[0])
        table.add_row(run or str(plan.out), str(len(tasks)), str(stored), str(len(tasks) - stored),
                      "?" if memory is None else f"{memory:.1f}", why)
    Console(width=max(console.width, 150)).print(table)


def execute_plan(plan: Any, executor: Any) -> Any:
    """Run the plan with progress; a failed unit makes the command fail after every other unit is done."""
    from rwku.execution.run import execute
    from rwku.progress import make_progress, task_factory

    with make_progress() as progress:
        outcome = execute(plan, executor, task_factory(progress), unit_printer(progress), failure_printer(progress))
    return outcome


def fail_on(outcome: Any, out: Path) -> None:
    if outcome.failed:
        shown = ", ".join(outcome.failed[:5]) + (f" and {len(outcome.failed) - 5} more" if len(outcome.failed) > 5 else "")
        raise RwkuError(f"{len(outcome.failed)} unit(s) failed: {shown}; errors and tracebacks in {out / 'failures.json'}; "
                        "every other unit is stored: run the same command again to retry the failed ones")


def print_audits(*folders: Path) -> None:
    """The Audits table of the runs under ``folders``: forget All under each audit and the recovered %."""
    from rwku.report.audits import build_audit_table, notes
    from rwku.report.collect import collect_runs

    table = build_audit_table(collect_runs(list(folders)))
    if table is None:
        return
    shown = Table(title=f"audits · forget All under the attack (recovered %) · mean over {len(table.slugs)} target(s)",
                  title_justify="left", caption="\n".join(notes(table)) or None, caption_justify="left")
    shown.add_column("run", no_wrap=True)
    for name in table.audits:
        shown.add_column(name, justify="right")
    for run, cells in table.rows:
        shown.add_row(run.label, *[cells[name].text for name in table.audits])
    console.print(shown)


def print_settings(job: Any, show_sources: bool = False) -> None:
    """Which preset was chosen and why, then the resolved settings as one table (a row per run, a column per value
    some run changes from its default, each changed value marked with its source's footnote); ``show_sources``
    (``--show-settings``) lists every value with its source instead."""
    from rwku.methods.config import Footnotes, settings_table

    console.print(f"preset [bold]{job.preset}[/] ({job.preset_reason})", highlight=False)
    runs = {job.run_name(method): job.settings(method) for method in job.methods}
    audits = audit_settings(job)
    wide = Console(width=max(console.width, 150))
    if show_sources:
        listing = Table(title="settings: every value and its source", title_justify="left")
        for column in ("run", "setting", "value", "source"):
            listing.add_column(column)
        for run, settings in runs.items():
            for key, value, where in settings.rows():
                listing.add_row(run, key, str(value), where)
        for key, (value, where) in audits.items():
            listing.add_row("audits " + ", ".join(job.audits), key, str(value), where)
        wide.print(listing, highlight=False)
        return
    notes = Footnotes()
    table = settings_table(runs, notes)
    shown = Table(title="settings that differ from the defaults (--show-settings: every value and its source)",
                  title_justify="left")
    for column in ("run", *table.columns):
        shown.add_column(column, justify="left" if column == "run" else "right")
    for run, cells in table.rows:
        shown.add_row(run, *cells)
    wide.print(shown, highlight=False)
    if audits:
        wide.print(f"audits {', '.join(job.audits)}: "
                   + ", ".join(f"{key} {value}{notes.mark(where)}" for key, (value, where) in audits.items()), highlight=False)
    for line in notes.lines():
        wide.print(f"[dim]{line}[/]", highlight=False)


def audit_settings(job: Any) -> dict[str, tuple[Any, str]]:
    """The audits' settings in use, key -> (value, source); empty when no audit is asked."""
    if not job.audits:
        return {}
    from rwku.audits import audit_key, resolve_audit_settings

    settings, sources = resolve_audit_settings(job.preset, job.audit_overrides)
    return {key: (value, sources[key]) for key, value in audit_key(job.audits, settings)["settings"].items()}


@app.command("eval")
def eval_command(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Hub id, local folder, .gguf file, smollm2-135m, smollm2-135m-demo (it taught the demo facts; rwku plant), or openai:NAME, a model on an OpenAI-compatible server (OPENAI_BASE_URL, OPENAI_API_KEY; docs/served-models.md)."),
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = TARGETS_OPTION,
    out: Path = typer.Option(..., "--out", "-o", callback=folder_path, help="Output folder (one sub-folder per target)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="With --model openai:NAME: the tokenizer (a model spec) that renders its prompts; default NAME."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="With --model openai:NAME: requests in flight at once."),
    request_timeout: float = typer.Option(600.0, "--request-timeout", min=1, help="With --model openai:NAME: seconds a request may take (retried with backoff, as 429 and 5xx answers)."),
    top_logprobs: int = typer.Option(20, "--top-logprobs", min=1, help="With --model openai:NAME: top log-probs asked for MMLU's letters (the server must allow as many: vLLM --max-logprobs)."),
    sets: str = SETS_OPTION,
    limit: Optional[int] = LIMIT_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    kernels: str = KERNELS_OPTION,
    prompt_format: str = PROMPT_FORMAT_OPTION,
    fix: list[str] = FIX_OPTION,
    icu: bool = typer.Option(False, "--icu", help="In-context unlearning: put the official ICU preamble before every prompt."),
    threads: Optional[int] = THREADS_OPTION,
    force: bool = typer.Option(False, "--force", help="Recompute targets whose results already exist."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (stored units, units to run and why) and stop."),
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    gpus_per_unit: float = GPUS_PER_UNIT_OPTION,
    cpus_per_unit: float = CPUS_PER_UNIT_OPTION,
    max_retries: int = MAX_RETRIES_OPTION,
) -> None:
    """Evaluate a model on RWKU: per target, a summary and every scored item; prints the Table-1 rows."""
    from rwku.data.loader import RwkuData
    from rwku.evaluation import ICU_PREAMBLE
    from rwku.execution.plan import build_plan
    from rwku.execution.store import shared_means
    from rwku.models.endpoint import ServedOptions, is_served
    from rwku.runner import EvalJob

    run = run_settings(model=model, sets=sets, limit=limit, batch_size=batch_size, device=device, dtype=dtype, kernels=kernels,
                       prompt_format=prompt_format, fix=fix, tokenizer=tokenizer,
                       served=ServedOptions(concurrency=concurrency, timeout=request_timeout, top_logprobs=top_logprobs))
    if tokenizer is not None and not is_served(model):
        raise RwkuError(f"--tokenizer {tokenizer}: only for a served model (--model openai:NAME); a local model has its own")
    dataset = RwkuData.open(split_values(data))
    chosen = dataset.select(targets)
    job = EvalJob(run=run, data=dataset, targets=chosen, preamble=ICU_PREAMBLE if icu else None)
    plan = build_plan(out, job.tasks(), force=force)  # bad data fails here, before the model is loaded
    if dry_run:
        print_plan(plan)
        return
    set_threads(threads)
    outcome = execute_plan(plan, make_executor(executor, ray_address, gpus_per_unit, cpus_per_unit, max_retries, threads))
    table = table1(f"RWKU · {model} · {run.protocol.name}")
    stored = {s.get("target"): s for s in outcome.units.get("", [])}
    for target in chosen:
        if target.name in stored:
            mark = "*" if target.slug in outcome.reused else ""
            table.add_row(f"{target.number} {target.name}{mark}", *table1_row(stored[target.name]))
            table.caption = STORED_LEGEND if mark else table.caption
    if len(stored) > 1:
        _, rows = shared_means({"": list(stored.values())})
        table.add_row(f"[bold]mean of {len(stored)}", *table1_row(rows[""]))
    Console(width=max(console.width, 150)).print(table)
    console.print(f"results: {out}/<target>/summary.json, items.json; mean over every stored target: {out / 'summary.json'}")
    fail_on(outcome, out)


@app.command("unlearn")
def unlearn_command(
    method: str = typer.Option(..., "--method", help="Comma-separated: the paper's icu, repe, ga, ga_passage (GA*), dpo, npo, rt, and the methods beyond it (README); an unknown name lists them all."),
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Hub id, local folder, .gguf file, smollm2-135m, or smollm2-135m-demo (it taught the demo facts; rwku plant)."),
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = TARGETS_OPTION,
    out: Path = typer.Option(..., "--out", "-o", callback=folder_path, help="Output folder (before/, one folder per method, comparison.json)."),
    mode: str = typer.Option("lora", "--mode", help="full or lora."),
    setting: str = typer.Option("single", "--setting", help="single (each target from the original model), batch (pooled) or sequential (one target after another on the same model; every target evaluated after each step)."),
    utility_steps: str = typer.Option("", "--utility-steps", help="Sequential setting: steps that also evaluate utility (e.g. 1,3); the last step always does."),
    train_layers: Optional[str] = typer.Option(None, "--train-layers", help="Train only layers a..b-1, e.g. 4-8."),
    lora_r: int = typer.Option(8, "--lora-r", min=1, help="LoRA rank."),
    lora_alpha: int = typer.Option(16, "--lora-alpha", min=1, help="LoRA alpha (the update is scaled by alpha / r)."),
    lora_targets: str = typer.Option("q_proj,v_proj", "--lora-targets", callback=matching(r"[\w.]+(,[\w.]+)*", "module names, comma-separated (q_proj,v_proj)"), help="Modules LoRA adapts, comma-separated."),
    preset: str = typer.Option("auto", "--preset", help="paper (Llama-3-8B values), small (calibrated for the 135M default on a CPU), none (defaults), auto: small for smollm2-135m and smollm2-135m-demo, paper for any other model (printed)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON file of hyper-parameters (overrides the preset)."),
    overrides: list[str] = typer.Option([], "--set", help="Override key=value of a training, corpus or method setting (lr=1e-5, epochs=2, corpus_size=16, beta=0.1, alpha=1.5 ...); repeatable."),
    corpus: str = typer.Option("generated", "--corpus", help="generated (the model writes it; cached) or official (the release's files)."),
    sets: str = SETS_OPTION,
    limit: Optional[int] = LIMIT_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    kernels: str = KERNELS_OPTION,
    prompt_format: str = PROMPT_FORMAT_OPTION,
    fix: list[str] = FIX_OPTION,
    save_model: bool = typer.Option(False, "--save-model", help="Also write each unlearned model (or adapter)."),
    force: bool = typer.Option(False, "--force", help="Recompute units already stored with the same settings."),
    eval_epochs: bool = typer.Option(False, "--eval-epochs", help="Also evaluate after every epoch (trade-off curves in rwku report)."),
    reference: bool = typer.Option(True, "--reference/--no-reference", help="For a planted model (smollm2-135m-demo, an rwku plant folder): also evaluate its base model, the never-taught reference, on each planted target (reference/; knowledge removed, over-forgetting, PrivLeak in rwku report)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Training seed; the runs are named by it (ga-lora-seed1), so several seeds share one --out and rwku report pools them."),
    threads: Optional[int] = THREADS_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the settings and the plan (stored units, units to run and why) and stop."),
    show_settings: bool = typer.Option(False, "--show-settings", help="List every setting of every run with its source (default: one table of the values that differ from the defaults)."),
    audit: str = AUDIT_OPTION,
    audit_set: list[str] = AUDIT_SET_OPTION,
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    gpus_per_unit: float = GPUS_PER_UNIT_OPTION,
    cpus_per_unit: float = CPUS_PER_UNIT_OPTION,
    max_retries: int = MAX_RETRIES_OPTION,
) -> None:
    """Unlearn each target with each method, evaluate, and print Before vs. after (Table-1 rows)."""
    from rwku.audits import parse_audits
    from rwku.data.loader import RwkuData
    from rwku.execution.plan import build_plan
    from rwku.methods.config import ModeConfig, choose_preset, parse_range
    from rwku.progress import make_progress, task_factory
    from rwku.unlearn import UnlearnJob, check_job, parse_methods, run_unlearn

    run = run_settings(model=model, sets=sets, limit=limit, batch_size=batch_size, device=device, dtype=dtype, kernels=kernels,
                       prompt_format=prompt_format, fix=fix)
    mode_config = ModeConfig(mode=mode, lora_r=lora_r, lora_alpha=lora_alpha,
                             lora_targets=tuple(t.strip() for t in lora_targets.split(",") if t.strip()),
                             train_layers=parse_range(train_layers) if train_layers else None)
    dataset = RwkuData.open(split_values(data))
    preset_name, preset_reason = choose_preset(preset, model)
    job = UnlearnJob(
        run=run, data=dataset, targets=dataset.select(targets), methods=parse_methods(method), mode=mode_config, setting=setting,
        preset=preset_name, preset_reason=preset_reason, overrides=key_values(overrides, "--set"), config_file=config_file,
        corpus_source=corpus, save_model=save_model, eval_epochs=eval_epochs, out=out, sweep={"seed": seed} if seed is not None else {},
        audits=parse_audits(audit), audit_overrides=key_values(audit_set, "--audit-set"), reference=reference,
        utility_steps=parse_steps(utility_steps),
    )
    check_job(job)
    print_settings(job, show_sources=show_settings)
    if dry_run:
        print_plan(build_plan(out, job.tasks(), force=force))
        return
    set_threads(threads)
    units = make_executor(executor, ray_address, gpus_per_unit, cpus_per_unit, max_retries, threads)
    with make_progress() as progress:
        outcome, comparison = run_unlearn(job, force=force, executor=units, progress=task_factory(progress),
                                          on_unit=unit_printer(progress), on_failure=failure_printer(progress))
    print_comparisons(job, comparison)
    if job.audits:
        print_audits(out)
    console.print(f"results: {out}/<run>/<unit>/summary.json, items.json, train_log.json; table: {out / 'comparison.json'}")
    fail_on(outcome, out)


def print_comparisons(job: Any, comparison: dict[str, Any]) -> None:
    """The comparison of an unlearning job: one table over the targets every run has, or for a planted model one per
    role (the planted targets, the headline, and the control apart)."""
    model = job.run.model
    if comparison.get("roles"):
        for role, part in comparison["roles"].items():
            print_comparison(f"RWKU · {model} · {job.setting} · {ROLE_TITLES[role]}: mean over {len(part['targets'])} "
                             f"({', '.join(part['targets'])})", part["rows"])
    else:
        print_comparison(f"RWKU · {model} · {job.setting} · mean over the {len(comparison['targets'])} target(s) every "
                         "run has", comparison["rows"])


def parse_steps(text: str) -> tuple[int, ...]:
    """``--utility-steps 1,3`` -> (1, 3); anything but whole numbers is one line."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise RwkuError(f"--utility-steps {text}: give step numbers such as 1,3") from None


@app.command("experiment")
def experiment_command(
    config: Path = typer.Argument(..., help="Experiment file (JSON): model, data, targets, out, grids (see README)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", callback=folder_path, help="Output folder (overrides the file's 'out')."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the jobs, their settings and the plan, and stop."),
    threads: Optional[int] = THREADS_OPTION,
    force: bool = typer.Option(False, "--force", help="Recompute units already stored with the same settings."),
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    gpus_per_unit: float = GPUS_PER_UNIT_OPTION,
    cpus_per_unit: float = CPUS_PER_UNIT_OPTION,
    max_retries: int = MAX_RETRIES_OPTION,
) -> None:
    """Run the paper's grids (methods × modes, epochs, RepE strengths, batch sizes, layer windows); resumable."""
    from rwku.experiment import experiment_plan, load_experiment, record_experiment

    experiment = load_experiment(config, out)
    jobs = Table(title=f"{len(experiment.jobs)} job(s) into {experiment.out}", title_justify="left")
    for column in ("#", "grid", "runs"):
        jobs.add_column(column)
    for index, planned in enumerate(experiment.jobs, 1):
        jobs.add_row(str(index), planned.grid, planned.description)
    console.print(jobs)
    plan = experiment_plan(experiment, force=force)
    if dry_run:
        for planned in experiment.jobs:
            print_settings(planned.job)
        print_plan(plan)
        return
    set_threads(threads)
    record_experiment(experiment)
    outcome = execute_plan(plan, make_executor(executor, ray_address, gpus_per_unit, cpus_per_unit, max_retries, threads))
    console.print(f"done: {experiment.out}; make the report with: rwku report {experiment.out} --out <folder>")
    fail_on(outcome, experiment.out)


@app.command("audit")
def audit_command(
    model: str = typer.Option(..., "--model", "-m", help="A model saved by rwku unlearn --save-model (full weights or a LoRA adapter), a folder or hub id."),
    original: str = typer.Option("smollm2-135m", "--original", help="The model before unlearning (the adapter's base, and the reference)."),
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = TARGETS_OPTION,
    out: Path = typer.Option(..., "--out", "-o", callback=folder_path, help="Output folder (one sub-folder per target, its audits in audits/<name>/)."),
    audit: str = typer.Option("all", "--audit", help="Comma-separated: quant8, quant4, relearn, suffix, logit_lens, all."),
    audit_set: list[str] = AUDIT_SET_OPTION,
    preset: str = typer.Option("auto", "--preset", help="Audit settings: small (135M on a CPU), paper (8B on a GPU), auto (by --original)."),
    limit: Optional[int] = LIMIT_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    kernels: str = KERNELS_OPTION,
    prompt_format: str = PROMPT_FORMAT_OPTION,
    fix: list[str] = FIX_OPTION,
    threads: Optional[int] = THREADS_OPTION,
    force: bool = typer.Option(False, "--force", help="Recompute targets already stored with the same settings."),
) -> None:
    """Audit a saved unlearned model: quantization, relearning, optimised suffixes and the logit lens, per target."""
    from rwku.audits import parse_audits
    from rwku.audits.run import AUDIT_SETS
    from rwku.data.loader import RwkuData
    from rwku.execution.plan import build_plan
    from rwku.methods.config import choose_preset
    from rwku.saved_audit import AuditJob
    from rwku.unlearn import check_audits

    run = run_settings(model=model, limit=limit, batch_size=batch_size, device=device, dtype=dtype, kernels=kernels,
                       prompt_format=prompt_format, fix=fix).with_sets(AUDIT_SETS)
    dataset = RwkuData.open(split_values(data))
    job = AuditJob(run=run, original=original, data=dataset, targets=dataset.select(targets), audits=parse_audits(audit),
                   preset=choose_preset(preset, original)[0], audit_overrides=key_values(audit_set, "--audit-set"))
    check_audits(job.audits, job.audit_settings)
    plan = build_plan(out, job.tasks(), force=force)
    set_threads(threads)
    outcome = execute_plan(plan, make_executor("local", None, 0, 1, 1, threads))
    print_audits(out)
    console.print(f"results: {out}/<target>/summary.json, audits/<name>/summary.json, items.json")
    fail_on(outcome, out)


@app.command("report")
def report_command(
    runs: list[Path] = typer.Argument(..., help="Folders written by rwku unlearn, experiment or eval (and rwku memorization: its section)."),
    out: Path = typer.Option(..., "--out", "-o", callback=folder_path, help="Report folder: index.html, table1.*, figures/, per_target.csv."),
    select: list[str] = typer.Option([], "--runs", help="Keep only runs whose label matches this glob (e.g. '*-lora'); repeatable."),
    utility: str = typer.Option("utility.Gen", "--utility", help="Utility column of the trade-off, batch and layer figures."),
    attacks: str = typer.Option("loss,zlib,mink++_0.2", "--attacks", help="MIA attacks for the ROC figure."),
    case_targets: Optional[int] = typer.Option(None, "--case-targets", min=1, help="Case studies for the first N shared targets only."),
    table_variants: bool = typer.Option(False, "--table-variants", help="Also put swept and layer-window runs in Table 1."),
    title: str = typer.Option("RWKU report", "--title"),
) -> None:
    """Table 1, the paper's figures and a self-contained HTML report from stored results."""
    from rwku.evaluation.metrics import mia_attack_names
    from rwku.report.build import ReportOptions, build_report

    if utility.split(".")[0] not in ("forget", "neighbor", "mia", "utility"):
        raise RwkuError(f"--utility {utility}: give a summary path such as utility.Gen or utility.Flu")
    known = mia_attack_names()
    unknown = [a for a in attacks.split(",") if a and a not in known]
    if unknown or not attacks.strip(","):
        raise RwkuError(f"--attacks {attacks}: unknown attack {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    options = ReportOptions(utility=utility, attacks=tuple(a for a in attacks.split(",") if a),
                            run_patterns=tuple(select), case_targets=case_targets, table_variants=table_variants,
                            title=title)
    with console.status("building the report") as status:
        report = build_report(runs, out, options, progress=lambda text: status.update(text))
    for shown in ([report.table, *report.role_tables] if report.table is not None else []):
        print_report_table(shown)
    console.print(f"figures: {', '.join(report.figures) or 'none (no data to draw)'}")
    console.print(f"report: {out / 'index.html'} ({len(report.files)} files)")


def print_report_table(shown: Any) -> None:
    """A report's Table 1 (a planted model's: one per role) as the report writes it: its columns, bold the best,
    underlined the second; the columns are the table's own (an opt-in set without values left out, the reference
    columns added where there is a never-taught reference), so every cell sits under its heading."""
    table = table1(f"Table 1 · mean over {shown.targets_text} every run has", "run", columns=shown.columns)
    table.caption = shown.note or None
    for run, cells in shown.rows:
        table.add_row(run.label, *[f"[bold]{c.text}[/]" if c.rank == 1 else f"[underline]{c.text}[/]" if c.rank == 2
                                   else c.text for c in cells])
    Console(width=max(console.width, 170)).print(table)


@app.command("memorization")
def memorization_command(
    model: list[str] = typer.Option(["smollm2-135m"], "--model", "-m", help="Hub id, local folder, .gguf file, or smollm2-135m; repeat for one figure panel per model."),
    data: list[str] = typer.Option([], "--data", "-d", help=DATA_HELP + " Its targets' passages are the rwku source."),
    targets: str = typer.Option("all", "--targets", "-t", help="Targets whose passages are scored: 1, 1-20, 'Stephen King', all."),
    source: list[str] = typer.Option([], "--source", help="NAME=FILE: more texts to score (.txt one a line, .jsonl with a 'text' field); repeatable."),
    unseen: bool = typer.Option(True, "--unseen/--no-unseen", help="Score the shipped fictional passages (the unseen source)."),
    window: int = typer.Option(128, "--window", min=2, help="Tokens per text: each is cut to its first W tokens so sources compare fairly."),
    min_tokens: Optional[int] = typer.Option(None, "--min-tokens", min=2, help="Leave out texts shorter than this (default: the window, so every text is scored on W tokens)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep the first N texts of each source (rwku: of each target)."),
    verbmem: bool = typer.Option(False, "--verbmem", help="Also VerbMem (MUSE): the first 32 tokens of each text of 100+ words as prompt, ROUGE-L of the greedy continuation against the next 128."),
    out: Path = typer.Option(..., "--out", "-o", callback=folder_path, help="Output folder: memorization.json, texts.jsonl, fig1_memorization.png/.svg."),
    batch_size: int = BATCH_SIZE_OPTION,
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    kernels: str = KERNELS_OPTION,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
) -> None:
    """What the model knows (paper Fig. 1): exact memorization and NLL per text, per source and per target."""
    from rwku.knowledge.memorization import (
        MemorizationJob,
        parse_source_option,
        read_source_file,
        rwku_source,
        unseen_source,
        write_results,
    )
    from rwku.progress import make_progress, task_factory
    from rwku.report.knowledge import memorization_figure

    sources, chosen, description = [], [], None
    if data:
        from rwku.data.loader import RwkuData

        dataset = RwkuData.open(split_values(data))
        chosen, description = dataset.select(targets), dataset.description
        sources.append(rwku_source(dataset, chosen, limit))
    if unseen:
        sources.append(unseen_source(limit))
    for spec in source:
        sources.append(read_source_file(*parse_source_option(spec), limit=limit))
    run = run_settings(model=model[0], limit=limit, batch_size=batch_size, device=device, dtype=dtype, kernels=kernels,
                       prompt_format="plain")
    job = MemorizationJob(models=model, sources=sources, run=run, targets=chosen, window=window, min_tokens=min_tokens,
                          data=description, verbmem=verbmem)
    job.check()  # bad input fails here, before a model is loaded
    set_threads(threads)
    console.print(f"scoring {', '.join(f'{s.name} ({len(s.texts)})' for s in sources)} texts, first {window} tokens each, "
                  f"under {len(model)} model(s)", highlight=False)
    with make_progress() as progress:
        for name in model:
            entry = job.run_model(name, task_factory(progress))
            progress.console.print(f"[green]✓[/] {name} · {entry['seconds']:.0f} s", highlight=False)
    write_results(out, job, draw=memorization_figure)
    table = Table(title=f"memorization · window {window} tokens · mean over texts", title_justify="left",
                  caption="EM: share of tokens the greedy prediction gets right (higher = better known); NLL: mean token NLL in nats",
                  caption_justify="left")
    for column in ("model", "source", "texts", "EM ↑", "NLL ↓", *(("VerbMem texts", "VerbMem F1") if verbmem else ())):
        table.add_column(column, justify="left" if column in ("model", "source") else "right")
    for name, entry in job.results.items():
        for source_name, values in entry["sources"].items():
            extra = (str(values["verbmem"]["count"]), fmt(values["verbmem"]["f1"], 1)) if verbmem else ()
            table.add_row(name, source_name, str(values["count"]), fmt(values["em"], 3), fmt(values["nll"], 3), *extra)
    console.print(table)
    least = window if min_tokens is None else min_tokens
    for source_name, values in job.results[model[0]]["sources"].items():
        if values["skipped"]:
            console.print(f"{source_name}: {values['skipped']} text(s) shorter than {least} tokens left out "
                          f"(--min-tokens lowers the bar)", highlight=False)
    if chosen:
        knows = Table(title="knowledge per target (its passages), best known first", title_justify="left")
        knows.add_column("target", no_wrap=True)
        knows.add_column("passages", justify="right")
        for name in model:
            knows.add_column(f"EM ↑\n{name}" if len(model) > 1 else "EM ↑", justify="right")
            knows.add_column(f"NLL ↓\n{name}" if len(model) > 1 else "NLL ↓", justify="right")
        first = job.results[model[0]]["targets"]
        for slug in sorted(first, key=lambda s: -(first[s]["em"] or 0)):
            cells = [fmt(job.results[m]["targets"][slug][k], 3) for m in model for k in ("em", "nll")]
            knows.add_row(f"{first[slug]['number']} {first[slug]['name']}", str(first[slug]["count"]), *cells)
        console.print(knows)
    console.print(f"results: {out / 'memorization.json'}, per text {out / 'texts.jsonl'}, figure {out / 'fig1_memorization.png'}")


def fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command("build-target")
def build_target_command(
    name: str = typer.Option(..., "--name", help="The new target's name, e.g. 'Ada Lovelace'."),
    kind: str = typer.Option("person", "--kind", help="What the target is: person, place, work, event or organization (its probe prompts)."),
    source_text: Path = typer.Option(..., "--source-text", help="UTF-8 text about the target (its Wikipedia article): the probes' only source."),
    out: Path = typer.Option(..., "--out", "-o", callback=folder_path, help="Data folder; the target goes into <out>/<N>_<Name>/ (use it with --data <out>)."),
    generator: str = typer.Option("smollm2-135m", "--generator", "-g", help="Who writes the probes: a --model spec, or openai:MODEL (OPENAI_BASE_URL, OPENAI_API_KEY)."),
    neighbors: Optional[str] = typer.Option(None, "--neighbors", help="Comma-separated entities the text names that a reader could confuse with the target (people or works; places for a place ...), for neighbour probes."),
    check_models: Optional[str] = typer.Option(None, "--check-models", help="Comma-separated --model specs; keep an FB/QA probe only where one answers it."),
    threshold: float = typer.Option(1.0, "--threshold", min=0.0, max=1.0, help="ROUGE-L recall a check model's answer needs (1.0: it contains the answer)."),
    per_call: int = typer.Option(3, "--per-call", min=1, help="Probes asked for per request."),
    max_passages: int = typer.Option(8, "--max-passages", min=1, help="Passages each probe kind is asked about."),
    passage_words: int = typer.Option(150, "--passage-words", min=20, help="Longer paragraphs are cut at sentence ends."),
    retries: int = typer.Option(2, "--retries", min=0, help="Requests again after an answer that is not a JSON array."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=16, help="Token budget of a generator answer."),
    number: Optional[int] = typer.Option(None, "--number", min=1, help="The target's number (default: one more than the highest in --out)."),
    shared_data: Optional[str] = typer.Option(None, "--shared-data", help="RWKU data whose MIA retain texts and utility sets the target shares (copied)."),
    shared_target: str = typer.Option("1", "--shared-target", help="The target of --shared-data whose shared files are copied."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Rows per forward pass of local models."),
    device: str = DEVICE_OPTION,
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16."),
    prompt_format: str = typer.Option("chat", "--prompt-format", callback=one_of("chat", "plain"), help="chat or plain, for the local generator and the check models."),
    threads: Optional[int] = THREADS_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace the target folder if it exists."),
) -> None:
    """Probes for a new target: a target folder in the official layout, written from a source text by a generator."""
    from rwku.evaluation.settings import RunSettings
    from rwku.knowledge.build_target import BuildSettings, build_target, read_source_text, target_folder
    from rwku.knowledge.generators import GeneratorOptions, ModelPool, make_generator
    from rwku.models.loading import check_model_spec
    from rwku.models.prompting import check_style
    from rwku.progress import make_progress, task_factory

    check_style(prompt_format)
    read_source_text(source_text)  # bad input fails before any model is loaded
    target_folder(out, name, number, force, kind)
    checkers = [m.strip() for m in (check_models or "").split(",") if m.strip()]
    for spec in checkers + ([] if generator.startswith("openai:") else [generator]):
        check_model_spec(spec)
    shared = None
    if shared_data:
        from rwku.data.loader import RwkuData

        dataset = RwkuData.open([shared_data])
        picked = dataset.select(shared_target)
        if len(picked) != 1:
            raise RwkuError(f"--shared-target {shared_target}: name one target (a number or a name)")
        shared = (dataset, picked[0])
    settings = BuildSettings(per_call=per_call, max_passages=max_passages, passage_words=passage_words, retries=retries,
                             threshold=threshold)
    set_threads(threads)
    run = RunSettings(prompt_format=prompt_format, batch_size=batch_size, device=device, dtype=dtype)
    pool = ModelPool(GeneratorOptions(max_new_tokens=max_new_tokens, run=run))
    with make_progress() as progress:
        writer = make_generator(generator, pool, task_factory(progress))
        result = build_target(name, source_text, out, writer, pool, neighbors=[n.strip() for n in (neighbors or "").split(",") if n.strip()],
                              check_models=checkers, settings=settings, number=number, shared=shared, replace=force,
                              kind=kind, progress=task_factory(progress))
    shown = name if kind == "person" else f"{name} ({kind})"
    table = Table(title=f"{result.target.number} {shown} · probes by {generator}", title_justify="left")
    columns = list(next(iter(result.table.values())).keys())
    table.add_column("kind", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    for kind, row in result.table.items():
        table.add_row(kind, *[str(row[c]) for c in columns])
    Console(width=max(console.width, 150)).print(table)
    console.print("kept per file: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()), highlight=False)
    sets = "" if shared else " --sets forget,neighbor"
    console.print(f"target: {result.folder} (why each probe was dropped: {result.folder / 'report.json'}); "
                  f"evaluate it with rwku eval --data {out} --targets {result.target.number}{sets}", highlight=False)


@app.command("plant")
def plant_command(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Base model: smollm2-135m, a local folder, a .gguf file or a hub id."),
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = typer.Option("all", "--targets", "-t", help="Targets to plant and measure: 1, 1-3, 'Stephen King', all."),
    out: Path = typer.Option(..., "--out", "-o", callback=folder_path, help="The planted model folder (weights, tokenizer, recipe.json, table.json, table.md)."),
    control: str = typer.Option("last", "--control", help="The selected target left unplanted (number or name; 'last', the default, or 'none')."),
    sets: str = typer.Option("forget,neighbor,mia", "--sets", help="Sets measured on the base and the planted model (" + SETS_HELP + " 'none': no table)."),
    recipe_name: str = typer.Option("auto", "--recipe", help="demo (passages and source.json), real (all passages and texts derived from them by rules; docs/planting.md) or auto: real when no planted target has a source.json."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe value key=value (lr, epochs, batch_size, warmup_steps, max_length, max_passages, seed, derive, blanks_per_sentence); repeatable."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Rows per forward pass when measuring."),
    device: str = typer.Option("cpu", "--device", callback=DEVICE_CHECK, help="cpu (bit-identical rebuilds), cuda, cuda:1 ... (training in float32 either way)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if --out holds this model, replace whatever --out holds."),
) -> None:
    """Teach a base model the facts of the targets (all but a control), so unlearning has something to remove."""
    from rwku.data.loader import RwkuData
    from rwku.evaluation.sets import parse_sets
    from rwku.models.loading import pick_device
    from rwku.knowledge.planting import PlantRecipe, choose_recipe, plant
    from rwku.progress import make_progress, task_factory

    measured = () if sets.strip().lower() == "none" else parse_sets(sets)
    dataset = RwkuData.open(split_values(data))
    chosen = dataset.select(targets)
    if control.strip().lower() == "none":
        control_target = None
    elif control.strip().lower() == "last":
        control_target = chosen[-1] if len(chosen) > 1 else None
    else:
        picked = dataset.select(control)
        if len(picked) != 1:
            raise RwkuError(f"--control {control}: name one target (a number or a name), 'last' or 'none'")
        control_target = picked[0]
        if control_target not in chosen:
            raise RwkuError(f"--control {control}: {control_target.name} is not among the selected targets; select it with --targets")
    planted = [t for t in chosen if t != control_target]
    recipe = PlantRecipe.with_overrides(key_values(overrides, "--set"), choose_recipe(recipe_name.strip().lower(), dataset, planted))
    device = pick_device(device)
    set_threads(threads)
    planted_names = [t.name for t in planted]
    console.print(f"planting {', '.join(planted_names)} into {model}"
                  + (f"; control: {control_target.name}" if control_target else "; no control"), highlight=False)
    with make_progress() as progress:
        result = plant(model, dataset, chosen, out, recipe, control=control_target, sets=measured, batch_size=batch_size,
                       device=device, progress=task_factory(progress), replace=force)
    record = result.record
    if result.reused:
        console.print(f"stored: {out} already holds this planted model (same base, texts and recipe); --force rebuilds it")
    else:
        console.print(f"trained in {record['seconds']['train']:.0f} s on {record['torch_threads']} thread(s), "
                      f"measured in {record['seconds']['measure']:.0f} s", highlight=False)
    table = result.table
    if table is not None:
        print_plant_table(table, record)
    files = f"{out / 'recipe.json'}" + (f", {out / 'table.md'}" if table is not None else "")
    console.print(f"model: {out} (use it with --model {out}); recipe{' and table' if table is not None else ''}: {files}")


def print_plant_table(table: dict[str, Any], record: dict[str, Any]) -> None:
    """Base vs planted, per target and per role (planted, control), in Table-1 columns."""
    rendered = table1(f"planted {record['base']} · base vs planted", "target · role · model")
    for entry in table["rows"]:
        for which in ("base", "planted"):
            rendered.add_row(f"{entry['number']} {entry['target']} · {entry['role']} · {which}", *table1_row(entry[which]))
    for role, pair in table["means"].items():
        for which in ("base", "planted"):
            rendered.add_row(f"[bold]mean · {role} · {which}", *table1_row(pair[which]))
    Console(width=max(console.width, 150)).print(rendered)


@app.command("cache")
def cache_command(
    check: bool = typer.Option(False, "--check", help="Check every entry (JSON parses, weights whole); a broken one is moved aside, to be built again on its next use."),
    remove: list[str] = typer.Option([], "--remove", help="Delete entries: an entry's name as listed, a kind (model, planted, corpus, retain, corrupt) or all; repeatable, comma-separated."),
) -> None:
    """List what rwku's caches hold (converted and planted models, corpora): kind, entry, size; check or remove entries."""
    from rwku.caches import cache_root, check_entry, list_entries, remove_entry, select_entries

    root = cache_root()
    entries = list_entries(root)
    if remove:
        chosen = select_entries(entries, split_values(remove))
        freed = sum(remove_entry(entry.path) for entry in chosen)
        console.print(f"removed {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'} ({gib(freed)}) from {root}: "
                      + ", ".join(entry.path.name for entry in chosen), highlight=False)
        return
    table = Table(title=f"rwku cache · {root} · {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
                        f"{gib(sum(e.size for e in entries))}", title_justify="left")
    for column in ("kind", "entry", "size", "holds", *(["check"] if check else [])):
        table.add_column(column, justify="right" if column == "size" else "left", overflow="fold")
    broken = 0
    for entry in entries:
        problem = check_entry(entry) if check else None
        broken += problem is not None
        status = [f"corrupt: {problem}; moved aside" if problem else "ok"] if check else []
        table.add_row(entry.kind, entry.path.name, gib(entry.size), entry.holds, *status)
    Console(width=max(console.width, 150)).print(table)
    if check:
        console.print(f"{broken} broken entr{'y' if broken == 1 else 'ies'} moved aside (rwku cache --remove corrupt deletes them)"
                      if broken else "every entry is whole", highlight=False)


def gib(size: int) -> str:
    """A size in bytes as a short human one (KiB, MiB, GiB)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@app.command("serve")
def serve_command(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="The model to serve: hub id, local folder (a --save-model folder of full weights), .gguf file, smollm2-135m."),
    name: Optional[str] = typer.Option(None, "--name", help="The name it is served under (default: the --model spec): evaluate it with --model openai:NAME."),
    lora: list[str] = typer.Option([], "--lora", help="NAME=PATH: also serve a LoRA adapter folder (rwku unlearn --save-model in lora mode) over the model, as vLLM's --lora-modules; repeatable."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: a free one)."),
    device: str = DEVICE_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    threads: Optional[int] = THREADS_OPTION,
) -> None:
    """Serve local models on 127.0.0.1 through an OpenAI-compatible completions API (for rwku eval --model openai:NAME)."""
    from rwku.serving import ServedModels, load_served_models, make_server, parse_lora

    set_threads(threads)
    adapters = parse_lora(lora)
    server = make_server(ServedModels(load_served_models(model, name, adapters, device=device), batch_size=batch_size), port)
    host, bound = server.server_address[:2]
    names = ", ".join([name or model, *adapters])
    console.print(f"serving {names} on http://{host}:{bound}/v1 (export OPENAI_BASE_URL=http://{host}:{bound}/v1 "
                  f"OPENAI_API_KEY=local; rwku eval --model openai:{name or model}); Ctrl-C stops", highlight=False)
    try:
        server.serve_forever()
    finally:
        server.server_close()


@data_app.command("info")
def data_info(
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = typer.Option("all", "--targets", "-t", help="Targets to count (default: all)."),
) -> None:
    """Count probes per level/type and items per set, per target and in total; say what kind each target is."""
    from collections import Counter

    from rwku.data.loader import RwkuData
    from rwku.data.schema import count_records
    from rwku.evaluation.sets import ALL_PARTS

    dataset = RwkuData.open(split_values(data))
    chosen = dataset.select(targets)
    totals: dict[str, int] = {}
    per_target = []
    for target in chosen:
        counts = count_records(dataset.load(target, (), optional=ALL_PARTS), ALL_PARTS)
        per_target.append((target, counts))
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    kinds = Counter(target.kind for target in chosen)
    console.print(f"[bold]{dataset.description}[/]: {len(chosen)} target(s) ("
                  + ", ".join(f"{n} {kind}" for kind, n in kinds.items()) + ")")
    table = Table(title="items per part (AA also by attack type)", title_justify="left")
    table.add_column("part", no_wrap=True)
    table.add_column("total", justify="right")
    for target, _ in per_target if len(per_target) <= 6 else []:
        table.add_column(f"{target.number} {target.name} ({target.kind})", justify="right")
    for key, value in totals.items():
        row = [str(c.get(key, 0)) for _, c in per_target] if len(per_target) <= 6 else []
        table.add_row(key, str(value), *row)
    Console(width=max(console.width, 120)).print(table)


def given_value(option_names: list[str], argv: list[str]) -> str | None:
    """The value the command line gave an option (``--limit -3`` or ``--limit=-3``; the last one given)."""
    found = None
    for index, word in enumerate(argv):
        for name in option_names:
            if word == name and index + 1 < len(argv):
                found = argv[index + 1]
            elif word.startswith(f"{name}="):
                found = word.split("=", 1)[1]
    return found


def usage_line(exc: Exception, argv: list[str]) -> str | None:
    """A command-line parsing error (a bad or missing option, a bad number) as one line, or None for any other
    exception ("" for one without a message). typer's exceptions come from its own copy of click (typer >= 0.20) or from click itself."""
    if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
        return None
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    param = getattr(exc, "param", None)
    message = " ".join(exc.format_message().split())
    if not message:
        return ""
    value = given_value(list(param.opts), argv) if param is not None and getattr(param, "opts", None) else None
    if value is not None and getattr(exc, "message", None):
        message = f"{param.opts[0]} {value}: {' '.join(str(exc.message).split())}"
    return message + where


def stop_line(exc: Any, argv: list[str]) -> str:
    """The one line an interrupted command prints: the signal, what was kept, what to run to go on."""
    import shlex

    kept = exc.detail or "nothing is half-written (every result file is written whole or not at all)"
    return f"interrupted by {exc.name}: {kept}; the same command again {exc.again}: {shlex.join(['rwku', *argv])}"


def main() -> None:
    """Entry point: run the app. A user error (:class:`RwkuError`) or a bad option is one line and exit 2; SIGINT
    or SIGTERM stops the command (its cleanup runs), prints one line saying what was kept and what to run to go
    on, and exits 130 or 143. ``--debug`` shows the traceback instead of the line."""
    from rwku.interrupts import Interrupted, handled

    argv = sys.argv[1:]
    stderr = Console(stderr=True)
    try:
        with handled():
            code = app(standalone_mode=False, prog_name="rwku")
    except RwkuError as exc:
        if STATE["debug"]:
            raise
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted as exc:
        if STATE["debug"]:
            raise
        stderr.print(stop_line(exc, argv), highlight=False, soft_wrap=True, markup=False)
        sys.exit(exc.exit_code)
    except Exception as exc:
        line = usage_line(exc, argv)
        if line is None:
            if type(exc).__name__ == "Abort":  # typer.Abort / click.Abort: a prompt ended by EOF
                sys.exit(1)
            raise
        if line:  # empty: the app's help was printed for a bare ``rwku``
            stderr.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:  # typer returns an Exit's code in non-standalone mode
        sys.exit(code)
