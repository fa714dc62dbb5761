"""Table 1 of the paper from stored runs: one row per run, averaged over the targets every row shares.

Best and second-best cells are marked per column in the column's direction (forget ↓, neighbour ↑, FM ↑, RM ↓,
utility ↑), among the unlearning runs only (``before`` is the reference, never ranked). Ranks are decided on the
printed one-decimal values, so two cells that read the same are marked the same.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

from rwku.errors import RwkuError
from rwku.evaluation.sets import TABLE1_COLUMNS
from rwku.report.collect import Run
from rwku.results import get_path


@dataclass
class Cell:
    """A table value: ``None`` where the set was not evaluated; rank 1 = best, 2 = second, 0 = neither."""

    value: float | None
    rank: int = 0

    @property
    def text(self) -> str:
        return "-" if self.value is None else f"{self.value:.1f}"


@dataclass
class Table1:
    """Rows (run, cells), the unit slugs averaged over, and a note when some run had units others lack."""

    rows: list[tuple[Run, list[Cell]]]
    slugs: list[str]
    note: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)  # run label -> units left out of its mean


def single_target_units(run: Run) -> list[str]:
    """The run's one-target units (a "before" run also holds the pooled units of batch runs: those are not rows)."""
    return [slug for slug, unit in run.units.items() if len(unit.targets) == 1]


def common_slugs(runs: Sequence[Run]) -> list[str]:
    """The one-target units every run has, in the first run's order (none for no runs)."""
    if not runs:
        return []
    common = set.intersection(*(set(single_target_units(r)) for r in runs))
    return [s for s in single_target_units(runs[0]) if s in common]


def shared_slugs(runs: Sequence[Run]) -> tuple[list[str], dict[str, list[str]]]:
    """Targets every run has (in the first run's order), and per run the targets it has beyond them."""
    order = common_slugs(runs)
    if not order:
        listing = "; ".join(f"{r.label}: {', '.join(single_target_units(r)) or 'none'}" for r in runs)
        raise RwkuError(f"no target is shared by all runs ({listing}); choose runs with --runs or rerun the missing targets")
    extra = {r.label: [s for s in single_target_units(r) if s not in order] for r in runs}
    return order, {label: left for label, left in extra.items() if left}


def rank_column(values: Sequence[float | None], lower_is_better: bool, eligible: Sequence[bool]) -> list[int]:
    """1 for the best printed value, 2 for the next distinct one, among eligible non-missing cells."""
    shown = sorted({round(v, 1) for v, ok in zip(values, eligible) if ok and v is not None}, reverse=not lower_is_better)
    place = {v: i + 1 for i, v in enumerate(shown[:2])}
    return [place.get(round(v, 1), 0) if ok and v is not None else 0 for v, ok in zip(values, eligible)]


def is_table_row(run: Run, variants: bool = False) -> bool:
    """Table 1 holds the single-target runs; swept and layer-window variants only with ``variants`` (by default
    they are drawn in the trade-off and layer figures, over their own targets, as in the paper)."""
    return run.setting != "batch" and (variants or (not run.sweep and run.layers is None))


def build_table1(runs: Sequence[Run], variants: bool = False) -> Table1:
    """Rows in the given order; batch-setting runs pool targets and are drawn in the batch figure instead."""
    rows = [r for r in runs if is_table_row(r, variants)]
    if not rows:
        raise RwkuError("no single-target run to tabulate (only batch-setting or variant runs; try --table-variants)")
    slugs, extra = shared_slugs(rows)
    means = [r.mean(slugs) for r in rows]
    columns = []
    for _, _, path, lower in TABLE1_COLUMNS:
        values = [get_path(m, path) for m in means]
        ranks = rank_column(values, lower, [not r.is_before for r in rows])
        columns.append([Cell(v, k) for v, k in zip(values, ranks)])
    note = ""
    if extra:
        note = (f"Averaged over the {len(slugs)} target(s) all runs share; left out: "
                + "; ".join(f"{label}: {', '.join(left)}" for label, left in extra.items()) + ".")
    return Table1(rows=[(run, [col[i] for col in columns]) for i, run in enumerate(rows)], slugs=slugs, note=note, extra=extra)


def header(column: tuple[str, str, str, bool]) -> str:
    group, name, _, lower = column
    return f"{group} {name} {'↓' if lower else '↑'}"


def to_markdown(table: Table1) -> str:
    """GitHub Markdown: best in bold, second underlined (``<u>``), arrows in the header."""
    lines = ["| Run | " + " | ".join(header(c) for c in TABLE1_COLUMNS) + " |",
             "|---|" + "---:|" * len(TABLE1_COLUMNS)]
    for run, cells in table.rows:
        marked = [f"**{c.text}**" if c.rank == 1 else f"<u>{c.text}</u>" if c.rank == 2 else c.text for c in cells]
        lines.append(f"| {run.label} | " + " | ".join(marked) + " |")
    footer = f"\nMean over {len(table.slugs)} target(s): {', '.join(table.slugs)}."
    return "\n".join(lines) + "\n" + footer + (f" {table.note}" if table.note else "") + "\n"


def to_csv(table: Table1) -> str:
    """Plain numbers (full precision) plus a rank column per value, for spreadsheets and scripts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "n_targets"] + [header(c) for c in TABLE1_COLUMNS] + [f"rank {header(c)}" for c in TABLE1_COLUMNS])
    for run, cells in table.rows:
        writer.writerow([run.label, len(table.slugs)] + ["" if c.value is None else repr(c.value) for c in cells]
                        + [c.rank or "" for c in cells])
    return buffer.getvalue()


def to_json(table: Table1) -> dict[str, Any]:
    return {
        "columns": [{"group": g, "name": n, "path": p, "lower_is_better": lower} for g, n, p, lower in TABLE1_COLUMNS],
        "targets": table.slugs,
        "note": table.note,
        "left_out": table.extra,
        "rows": [{"run": run.label, "folder": str(run.folder), "model": run.model, "method": run.method,
                  "values": {p: c.value for (_, _, p, _), c in zip(TABLE1_COLUMNS, cells)},
                  "ranks": {p: c.rank for (_, _, p, _), c in zip(TABLE1_COLUMNS, cells)}} for run, cells in table.rows],
    }


def latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                          ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text


def to_latex(table: Table1) -> str:
    """A booktabs table: grouped headers with arrows, ``\\textbf`` best, ``\\underline`` second."""
    groups: list[tuple[str, int]] = []
    for group, _, _, _ in TABLE1_COLUMNS:
        if groups and groups[-1][0] == group:
            groups[-1] = (group, groups[-1][1] + 1)
        else:
            groups.append((group, 1))
    lines = [r"\begin{tabular}{l" + "r" * len(TABLE1_COLUMNS) + "}", r"\toprule",
             " & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{g}}}" for g, n in groups) + r" \\"]
    start = 2
    rules = []
    for _, n in groups:
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    lines.append(" ".join(rules))
    lines.append("Run & " + " & ".join(rf"{n} $\{'downarrow' if lower else 'uparrow'}$" for _, n, _, lower in TABLE1_COLUMNS) + r" \\")
    lines.append(r"\midrule")
    for run, cells in table.rows:
        marked = [rf"\textbf{{{c.text}}}" if c.rank == 1 else rf"\underline{{{c.text}}}" if c.rank == 2 else c.text for c in cells]
        lines.append(latex_escape(run.label) + " & " + " & ".join(marked) + r" \\")
        if run.is_before:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
