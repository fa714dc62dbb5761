"""The ``rwku`` command line: ``rwku eval``, ``unlearn``, ``experiment``, ``report`` and ``data info``.

User mistakes raise :class:`RwkuError`; ``main`` prints its one line and exits 2 (``--debug`` shows the
traceback instead).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

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


SETS_HELP = "Comma-separated sets or groups: forget, neighbor, mia, mmlu, bbh, truthful, triviaqa, fluency, utility (the last five), all."


def table1(title: str, first_column: str = "target") -> Table:
    from rwku.evaluation.sets import TABLE1_COLUMNS

    table = Table(title=title, title_justify="left", caption="* stored result of an earlier run with the same settings",
                  caption_justify="left")
    table.add_column(first_column, no_wrap=True)
    previous = ""
    for column in TABLE1_COLUMNS:
        heading = column.group if column.group != previous else ""
        table.add_column(f"{heading}\n{column.label}{'↓' if column.lower_is_better else '↑'}", justify="right", no_wrap=True)
        previous = column.group
    return table


def table1_row(summary: dict[str, Any]) -> list[str]:
    from rwku.results import table1_cells

    return list(table1_cells(summary).values())


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (left to torch when not given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def unit_printer(progress: Any) -> Any:
    """``on_unit`` for the unlearning runner: one line per finished (or reused) unit."""
    from rwku.results import table1_cells

    def show(run: str, unit: str, summary: dict[str, Any], reused: bool) -> None:
        cells = table1_cells(summary)
        progress.console.print(f"[green]✓[/] {run} · {unit}" + (" (stored)" if reused else "") +
                               f" · forget All {cells['forget.All']}, neighbor All {cells['neighbor.All']}")

    return show


def print_settings(job: Any) -> None:
    """Each run's settings with the source of every value, and which preset was chosen and why."""
    console.print(f"preset [bold]{job.preset}[/] ({job.preset_reason})")
    for method in job.methods:
        rows = job.settings(method).rows()
        if rows:
            console.print(f"  {job.run_name(method)}: " + ", ".join(f"{key} {value} [dim]({where})[/]" for key, value, where in rows),
                          highlight=False)


@app.command("eval")
def eval_command(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Hub id, local folder, .gguf file, or smollm2-135m."),
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = typer.Option("all", "--targets", "-t", help="Numbers, ranges and names: 1, 1-10, 'Stephen King', all."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (one sub-folder per target)."),
    sets: str = typer.Option("all", "--sets", help=SETS_HELP),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep the first N items of every part (quick runs)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Rows per forward pass (scores do not depend on it)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16."),
    prompt_format: str = typer.Option("chat", "--prompt-format", help="chat (the model's template) or plain (models without one)."),
    fix: list[str] = typer.Option([], "--fix", help="Switch on a named fix of an official quirk (see README); repeatable."),
    icu: bool = typer.Option(False, "--icu", help="In-context unlearning: put the official ICU preamble before every prompt."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    force: bool = typer.Option(False, "--force", help="Recompute targets whose results already exist."),
) -> None:
    """Evaluate a model on RWKU: per target, a summary and every scored item; prints the Table-1 rows."""
    from rwku.data.loader import RwkuData
    from rwku.evaluation import ICU_PREAMBLE, EvalContext, Protocol
    from rwku.evaluation.sets import parse_sets
    from rwku.models import PromptFormat, load_model
    from rwku.progress import make_progress, task_factory
    from rwku.runner import EvalJob, run_eval

    set_names = parse_sets(sets)
    protocol = Protocol.from_names(split_values(fix))
    dataset = RwkuData.open(split_values(data))
    chosen = dataset.select(targets)
    if out.exists() and not out.is_dir():
        raise RwkuError(f"--out {out}: is a file; give a folder")
    job = EvalJob(model=model, data=dataset, targets=chosen, sets=set_names, limit=limit)
    loaded = job.load_all()  # bad data fails here, before the model is loaded
    set_threads(threads)
    lm = load_model(model, device=device, dtype=dtype)
    prompts = PromptFormat(lm.tokenizer, style=prompt_format, preamble=ICU_PREAMBLE if icu else None,
                           single_bos=protocol.has("single-bos"))
    table = table1(f"RWKU · {model} · {protocol.name}")
    with make_progress() as progress:
        ctx = EvalContext(lm=lm, prompts=prompts, protocol=protocol, batch_size=batch_size, progress=task_factory(progress))

        def show(target: Any, summary: dict[str, Any], reused: bool) -> None:
            table.add_row(f"{target.number} {target.name}" + ("*" if reused else ""), *table1_row(summary))
            progress.console.print(f"[green]✓[/] {target.number} {target.name}: {out / target.slug}")

        average = run_eval(ctx, job, out, force=force, loaded=loaded, on_target=show)
    if len(chosen) > 1:
        table.add_row(f"[bold]mean of {len(chosen)}", *table1_row(average))
    Console(width=max(console.width, 150)).print(table)
    console.print(f"results: {out}/<target>/summary.json, items.json; average: {out / 'summary.json'}")


@app.command("unlearn")
def unlearn_command(
    method: str = typer.Option(..., "--method", help="Comma-separated: icu, repe, ga, ga_passage (GA*), dpo, npo, rt."),
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Hub id, local folder, .gguf file, or smollm2-135m."),
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = typer.Option("1", "--targets", "-t", help="Numbers, ranges and names: 1, 1-100, 'Stephen King', all."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (before/, one folder per method, comparison.json)."),
    mode: str = typer.Option("lora", "--mode", help="full or lora."),
    setting: str = typer.Option("single", "--setting", help="single (each target from the original model) or batch (pooled)."),
    train_layers: Optional[str] = typer.Option(None, "--train-layers", help="Train only layers a..b-1, e.g. 4-8."),
    lora_r: int = typer.Option(8, "--lora-r"),
    lora_alpha: int = typer.Option(16, "--lora-alpha"),
    lora_targets: str = typer.Option("q_proj,v_proj", "--lora-targets"),
    preset: str = typer.Option("auto", "--preset", help="paper (Llama-3-8B values), small (calibrated for the 135M default on a CPU), none (defaults), auto: small for smollm2-135m, paper for any other model (printed)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON file of hyper-parameters (overrides the preset)."),
    overrides: list[str] = typer.Option([], "--set", help="Override key=value of a training, corpus or method setting (lr=1e-5, epochs=2, corpus_size=16, beta=0.1, alpha=1.5 ...); repeatable."),
    corpus: str = typer.Option("generated", "--corpus", help="generated (the model writes it; cached) or official (the release's files)."),
    sets: str = typer.Option("all", "--sets", help=SETS_HELP),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep the first N items of every evaluation part."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    prompt_format: str = typer.Option("chat", "--prompt-format"),
    fix: list[str] = typer.Option([], "--fix"),
    save_model: bool = typer.Option(False, "--save-model", help="Also write each unlearned model (or adapter)."),
    force: bool = typer.Option(False, "--force", help="Recompute units already stored with the same settings."),
    eval_epochs: bool = typer.Option(False, "--eval-epochs", help="Also evaluate after every epoch (trade-off curves in rwku report)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
) -> None:
    """Unlearn each target with each method, evaluate, and print Before vs. after (Table-1 rows)."""
    from rwku.data.loader import RwkuData
    from rwku.evaluation import Protocol
    from rwku.evaluation.sets import parse_sets
    from rwku.methods.config import ModeConfig, choose_preset, parse_range
    from rwku.progress import make_progress, task_factory
    from rwku.unlearn import UnlearnJob, check_job, parse_methods, run_unlearn

    parsed: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise RwkuError(f"--set {item}: expected key=value")
        key, value = item.split("=", 1)
        parsed[key.strip()] = value.strip()
    mode_config = ModeConfig(mode=mode, lora_r=lora_r, lora_alpha=lora_alpha,
                             lora_targets=tuple(t.strip() for t in lora_targets.split(",") if t.strip()),
                             train_layers=parse_range(train_layers) if train_layers else None)
    dataset = RwkuData.open(split_values(data))
    preset_name, preset_reason = choose_preset(preset, model)
    job = UnlearnJob(
        model=model, data=dataset, targets=dataset.select(targets), methods=parse_methods(method), mode=mode_config, setting=setting,
        preset=preset_name, preset_reason=preset_reason, overrides=parsed, config_file=config_file,
        corpus_source=corpus, sets=parse_sets(sets), limit=limit, batch_size=batch_size,
        protocol=Protocol.from_names(split_values(fix)), prompt_format=prompt_format, device=device, dtype=dtype,
        save_model=save_model, force=force, eval_epochs=eval_epochs,
    )
    check_job(job)
    print_settings(job)
    set_threads(threads)
    with make_progress() as progress:
        rows = run_unlearn(job, out, task_factory(progress), unit_printer(progress))
    table = table1(f"RWKU · {model} · {job.setting} · {len(job.targets)} target(s) · mean over units", "run")
    for name, row in rows.items():
        table.add_row(name, *table1_row(row))
    Console(width=max(console.width, 150)).print(table)
    console.print(f"results: {out}/<run>/<unit>/summary.json, items.json, train_log.json; table: {out / 'comparison.json'}")


@app.command("experiment")
def experiment_command(
    config: Path = typer.Argument(..., help="Experiment file (JSON): model, data, targets, out, grids (see README)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (overrides the file's 'out')."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the jobs and stop."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
) -> None:
    """Run the paper's grids (methods × modes, epochs, RepE strengths, batch sizes, layer windows); resumable."""
    from rwku.experiment import load_experiment, run_experiment
    from rwku.progress import make_progress, task_factory

    experiment = load_experiment(config, out)
    plan = Table(title=f"{len(experiment.jobs)} job(s) into {experiment.out}", title_justify="left")
    for column in ("#", "grid", "runs"):
        plan.add_column(column)
    for index, planned in enumerate(experiment.jobs, 1):
        plan.add_row(str(index), planned.grid, planned.description)
    console.print(plan)
    if dry_run:
        for planned in experiment.jobs:
            print_settings(planned.job)
        return
    set_threads(threads)
    with make_progress() as progress:
        with task_factory(progress)("experiment jobs", len(experiment.jobs)) as advance:
            run_experiment(experiment, task_factory(progress), unit_printer(progress), on_job_done=lambda i, p: advance(1))
    console.print(f"done: {experiment.out}; make the report with: rwku report {experiment.out} --out <folder>")


@app.command("report")
def report_command(
    runs: list[Path] = typer.Argument(..., help="Folders written by rwku unlearn, experiment or eval."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: index.html, table1.*, figures/, per_target.csv."),
    select: list[str] = typer.Option([], "--runs", help="Keep only runs whose label matches this glob (e.g. '*-lora'); repeatable."),
    utility: str = typer.Option("utility.Gen", "--utility", help="Utility column of the trade-off, batch and layer figures."),
    attacks: str = typer.Option("loss,zlib,mink++_0.2", "--attacks", help="MIA attacks for the ROC figure."),
    case_targets: Optional[int] = typer.Option(None, "--case-targets", min=1, help="Case studies for the first N shared targets only."),
    table_variants: bool = typer.Option(False, "--table-variants", help="Also put swept and layer-window runs in Table 1."),
    title: str = typer.Option("RWKU report", "--title"),
) -> None:
    """Table 1, the paper's figures and a self-contained HTML report from stored results."""
    from rwku.report.build import ReportOptions, build_report

    if out.exists() and not out.is_dir():
        raise RwkuError(f"--out {out}: is a file; give a folder")
    if utility.split(".")[0] not in ("forget", "neighbor", "mia", "utility"):
        raise RwkuError(f"--utility {utility}: give a summary path such as utility.Gen or utility.Flu")
    options = ReportOptions(utility=utility, attacks=tuple(a for a in attacks.split(",") if a),
                            run_patterns=tuple(select), case_targets=case_targets, table_variants=table_variants,
                            title=title)
    with console.status("building the report") as status:
        report = build_report(runs, out, options, progress=lambda text: status.update(text))
    table = table1(f"Table 1 · mean over {len(report.table.slugs)} shared target(s)", "run")
    for run, cells in report.table.rows:
        table.add_row(run.label, *[f"[bold]{c.text}[/]" if c.rank == 1 else f"[underline]{c.text}[/]" if c.rank == 2
                                   else c.text for c in cells])
    table.caption = report.table.note or None
    Console(width=max(console.width, 150)).print(table)
    console.print(f"figures: {', '.join(report.figures) or 'none (no data to draw)'}")
    console.print(f"report: {out / 'index.html'} ({len(report.files)} files)")


@data_app.command("info")
def data_info(
    data: list[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    targets: str = typer.Option("all", "--targets", "-t", help="Targets to count (default: all)."),
) -> None:
    """Count probes per level/type and items per set, per target and in total."""
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
    console.print(f"[bold]{dataset.description}[/]: {len(chosen)} target(s)")
    table = Table(title="items per part (AA also by attack type)", title_justify="left")
    table.add_column("part", no_wrap=True)
    table.add_column("total", justify="right")
    for target, _ in per_target if len(per_target) <= 6 else []:
        table.add_column(f"{target.number} {target.name}", justify="right")
    for key, value in totals.items():
        row = [str(c.get(key, 0)) for _, c in per_target] if len(per_target) <= 6 else []
        table.add_row(key, str(value), *row)
    Console(width=max(console.width, 120)).print(table)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except RwkuError as exc:
        if STATE["debug"]:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: finished targets are saved; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
