"""``rwku report``: stored runs -> Table 1 (Markdown, CSV, JSON, LaTeX), figures (PNG, SVG), per-target CSV and
one self-contained HTML page. Every file is written atomically; ``report.json`` lists what was made from what."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rwku import __version__
from rwku.evaluation.sets import TABLE1_COLUMNS
from rwku.report import audits, figures, kinds, knowledge, sequential
from rwku.report.collect import Run, collect_runs, has_runs
from rwku.report.html import case_studies, figure_html, render_report
from rwku.report.table import (
    REFERENCE_COLUMNS,
    Table1,
    build_tables,
    common_slugs,
    reference_value,
    to_csv,
    to_json,
    to_latex,
    to_markdown,
)
from rwku.io import write_json_atomic, write_text_atomic
from rwku.results import get_path


@dataclass
class ReportOptions:
    """What to draw: the utility column of the trade-off, batch and layer figures; MIA attacks; case targets."""

    utility: str = "utility.Gen"
    attacks: tuple[str, ...] = ("loss", "zlib", "mink++_0.2")
    run_patterns: tuple[str, ...] = ()
    case_targets: int | None = None
    table_variants: bool = False  # swept and layer-window runs as Table-1 rows too
    title: str = "RWKU report"


@dataclass
class Report:
    table: Table1 | None  # None: the folders held only memorization results; a planted model's: the planted targets
    role_tables: list[Table1] = field(default_factory=list)  # a planted model's control table
    files: list[Path] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


MEMORIZATION_FIGURE = "fig1_memorization"


def figure_slugs(runs: Sequence[Run], drawn: Callable[[Run], bool]) -> list[str]:
    """Targets shared by the runs one figure draws: a sweep or layer study may cover fewer targets than Table 1."""
    return common_slugs([r for r in runs if r.setting == "single" and drawn(r)])


def in_family_with(runs: Sequence[Run], variant: Callable[[Run], bool]) -> Callable[[Run], bool]:
    """Runs that are such a variant, share a family with one (their plain reference), or are a "before" run."""
    families = {r.family for r in runs if variant(r)}
    return lambda r: r.is_before or variant(r) or r.family in families


def figure_plan(runs: Sequence[Run], table: Table1, options: ReportOptions) -> list[tuple[str, str, Callable[[], Any]]]:
    """(file name, caption, draw) of every figure the report may hold; a draw returns None when there is no data.

    Every figure gets all the runs (one colour per run across figures); the Table-1 figures draw its rows only.
    """
    utility, slugs, rows = options.utility, table.slugs, {run.label for run, _ in table.rows}
    curves = figure_slugs(runs, in_family_with(runs, lambda r: bool(r.epochs) or bool(r.sweep)))
    windows = figure_slugs(runs, in_family_with(runs, lambda r: r.layers is not None))
    return [
        ("attack_types", f"Forget score per adversarial attack type (paper Fig. 4); lower is better; mean over {len(slugs)} target(s).",
         lambda: figures.attack_types(runs, slugs, shown=rows)),
        ("trade_off", f"Efficacy vs. locality and vs. {utility} over epochs and RepE strengths (paper Fig. 3); "
                      f"mean over the {len(curves)} target(s) these runs share.",
         lambda: figures.trade_off(runs, curves, utility=utility)),
        ("batch_targets", f"Batch-target unlearning: forget, neighbour and {utility} over the number of targets (paper Fig. 5).",
         lambda: figures.batch_curves(runs, utility=utility)),
        ("layer_windows", f"Partial-layer unlearning: forget, neighbour and {utility} per trained layer window (paper Fig. 7); "
                          f"mean over the {len(windows)} target(s) these runs share.",
         lambda: figures.layer_windows(runs, windows, utility=utility)),
        ("mia_roc", "Membership inference: ROC of telling FM from RM texts, pooled over the shared targets.",
         lambda: figures.mia_roc(runs, slugs, attacks=options.attacks, shown=rows)),
        ("per_target", "Forget and neighbour scores per target (boxes over the shared targets, one point per target).",
         lambda: figures.per_target(runs, slugs, shown=rows)),
        ("sequential", f"Sequential unlearning: forget All of each target after each step (left); mean neighbour All and "
                       f"{utility} (where evaluated) after each step (right); step 0 is the original model.",
         lambda: sequential.figure(runs, utility=utility)),
    ]


def per_target_csv(rows: Sequence[Run], slugs: Sequence[str], runs: Sequence[Run] = ()) -> str:
    """Every Table-1 value of every row on every shared target: the numbers behind each mean; with a never-taught
    reference in the folders, each unit's values against it too (``n/a`` on a target without one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    against = REFERENCE_COLUMNS if any(r.reference for r in rows) else ()
    writer.writerow(["run", "target"] + [path for _, _, path, _ in TABLE1_COLUMNS] + [c.path for c in against])
    for run in rows:
        before = next((b for b in runs if b.is_before and b.folder == run.folder), None)
        for slug in slugs:
            values = [get_path(run.units[slug].summary, path) for _, _, path, _ in TABLE1_COLUMNS]
            reference = [reference_value(run, before, slug, c) for c in against]
            writer.writerow([run.label, slug] + ["" if v is None else repr(v) for v in values]
                            + ["n/a" if v is None else repr(v) for v in reference])
    return buffer.getvalue()


def role_markdown(table: Table1, role_tables: Sequence[Table1]) -> str:
    """Table 1 in Markdown; for a planted model the planted targets' table, then the control's under its heading."""
    parts = [to_markdown(table)] + [f"\n## {other.role.capitalize()} target(s)\n\n{to_markdown(other)}" for other in role_tables]
    return "".join(parts)


def build_report(folders: Sequence[Path], out: Path, options: ReportOptions | None = None,
                 progress: Callable[[str], None] | None = None) -> Report:
    """Collect the runs (and memorization results) under ``folders`` and write every artefact into ``out``."""
    options = options or ReportOptions()
    memorization = knowledge.collect_memorization(folders)
    # a folder holding only memorization results is no run folder; any other goes on (and fails clearly if empty)
    run_folders = [f for f in folders if has_runs(Path(f)) or not knowledge.memorization_folders(Path(f))]
    runs = collect_runs(run_folders, options.run_patterns) if run_folders else []
    tables = build_tables(runs, options.table_variants) if run_folders else []
    table, role_tables = (tables[0], tables[1:]) if tables else (None, [])
    rows = [run for run, _ in table.rows] if table else []
    report = Report(table=table, role_tables=role_tables)
    texts = {"table1.md": role_markdown(table, role_tables), "table1.csv": to_csv(table), "table1.tex": to_latex(table),
             "per_target.csv": per_target_csv(rows, table.slugs, runs)} if table else {}
    for other in role_tables:
        texts.update({f"table1-{other.role}.csv": to_csv(other), f"table1-{other.role}.tex": to_latex(other)})
    audit_table = audits.build_audit_table(runs) if table else None
    if audit_table is not None:
        texts.update({"audits.md": audits.to_markdown(audit_table), "audits.csv": audits.to_csv(audit_table),
                      "audits.tex": audits.to_latex(audit_table)})
    kind_tables, kinds_missing = kinds.kind_tables(runs, options.table_variants) if table else ({}, {})
    for kind, kind_table in kind_tables.items():
        texts.update({f"table1-{kind}.md": to_markdown(kind_table), f"table1-{kind}.csv": to_csv(kind_table)})
    if memorization:
        texts["knowledge.csv"] = knowledge.knowledge_csv(memorization)
    if sequential.sequential_runs(runs):
        texts["sequential.md"] = sequential.to_markdown(runs, options.utility)
    for name, text in texts.items():
        write_text_atomic(out / name, text)
        report.files.append(out / name)
    if table:
        write_json_atomic(out / "table1.json", {**to_json(table), **{other.role: to_json(other) for other in role_tables}})
        report.files.append(out / "table1.json")
    for kind, kind_table in kind_tables.items():
        write_json_atomic(out / f"table1-{kind}.json", to_json(kind_table))
        report.files.append(out / f"table1-{kind}.json")
    if audit_table is not None:
        write_json_atomic(out / "audits.json", audits.to_json(audit_table))
        report.files.append(out / "audits.json")
    if sequential.sequential_runs(runs):
        write_json_atomic(out / "sequential.json", sequential.to_json(runs, options.utility))
        report.files.append(out / "sequential.json")
    drawn = []
    plan = figure_plan(runs, table, options) if table else []
    if audit_table is not None:
        plan.append(("audits", f"Recovered % of what unlearning removed, per audit and run; mean over {len(audit_table.slugs)} target(s).",
                     lambda: figures.audit_recovery(runs, audit_table)))
    for name, caption, draw in plan:
        if progress is not None:
            progress(f"figure {name}")
        fig = draw()
        if fig is None:
            continue
        paths = figures.save_figure(fig, out / "figures", name)
        report.files.extend(paths)
        report.figures.append(name)
        drawn.append((name, caption, next(p for p in paths if p.suffix == ".svg")))
    memorization_section = ""
    if memorization:
        if progress is not None:
            progress(f"figure {MEMORIZATION_FIGURE}")
        fig = figures.memorization_scatter(knowledge.figure_panels(memorization))
        shown = ""
        if fig is not None:
            paths = figures.save_figure(fig, out / "figures", MEMORIZATION_FIGURE)
            report.files.extend(paths)
            report.figures.append(MEMORIZATION_FIGURE)
            shown = figure_html(MEMORIZATION_FIGURE, "Exact memorization vs. mean token NLL per text, one colour per source, "
                                "source means as diamonds (paper Fig. 1).", next(p for p in paths if p.suffix == ".svg"))
        memorization_section = knowledge.section_html(memorization, shown)
    slugs = table.slugs if table else []
    case_slugs = slugs[: options.case_targets] if options.case_targets else slugs
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = render_report(options.title, runs, table, drawn, case_studies(rows, case_slugs), generated,
                         memorization=memorization_section, knowledge=knowledge.knowledge_by_label(memorization),
                         audits=audits.section_html(audit_table) if audit_table else "",
                         kinds=kinds.section_html(kind_tables, kinds_missing), role_tables=role_tables)
    write_text_atomic(out / "index.html", page)
    report.files.append(out / "index.html")
    write_json_atomic(out / "report.json", {
        "rwku_version": __version__, "generated": generated, "sources": [str(f) for f in folders],
        "runs": [{"label": r.label, "folder": str(r.folder), "name": r.name, "units": list(r.units),
                  "epoch_points": {s: list(e) for s, e in r.epochs.items()}} for r in runs],
        "memorization": [str(m.folder) for m in memorization],
        "targets": slugs, "note": table.note if table else "", "figures": report.figures,
        "kinds": {kind: t.slugs for kind, t in kind_tables.items()}, "kinds_without_table": kinds_missing,
        "files": [str(p.relative_to(out)) for p in report.files],
    })
    return report
