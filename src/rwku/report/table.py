"""Table 1 of the paper from stored runs: one row per run, averaged over the targets every row shares.

Best and second-best cells are marked per column in the column's direction (forget ↓, neighbour ↑, FM ↑, RM ↓,
utility ↑, RWKU score ↑), among the unlearning runs only (``before`` is the reference, never ranked). Ranks are
decided on the printed one-decimal values, so two cells that read the same are marked the same. Every mean has a
95% bootstrap confidence interval over the targets (1,000 resamples, fixed seed), shown as ±; runs that differ only
in their training seed are one row, its mean and interval over seeds × targets.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from rwku.errors import RwkuError
from rwku.evaluation.reference import FORGET_PARTS, reference_scores
from rwku.evaluation.sets import SETS, TABLE1_COLUMNS, Column
from rwku.evaluation.table1 import rwku_score
from rwku.report.collect import Run, method_legend
from rwku.results import get_path

#: The RWKU score (harmonic mean of efficacy, locality and utility ×100), computed here from stored units
SCORE_COLUMN = Column("Score", "RWKU", "rwku_score.score", False)
#: Corpus coverage (``rwku.corpus.coverage``): the share of the forget answers the trained-on texts state; a
#: diagnostic beside forget All, never ranked
COVERAGE_COLUMN = Column("Forget", "Cov.", "coverage.percent", False)
#: Table 1's columns: the paper's with corpus coverage after forget All, then the RWKU score
COLUMNS: tuple[Column, ...] = (*(c for column in TABLE1_COLUMNS
                                 for c in ((column, COVERAGE_COLUMN) if column.path == "forget.All" else (column,))),
                               SCORE_COLUMN)
#: Columns that are no score: not ranked
UNRANKED: tuple[Column, ...] = (COVERAGE_COLUMN,)
#: Against the never-taught reference (:mod:`rwku.evaluation.reference`), shown when a folder has one; n/a on a
#: target without one (the control). PrivLeak is best at 0 (ranked by its distance from 0, arrow →0).
REFERENCE_COLUMNS: tuple[Column, ...] = (
    *(Column("Removed %", part, f"reference.removed.{part}", False) for part in FORGET_PARTS),
    Column("Over-forgetting", "Forget", "reference.over_forget", True),
    Column("Over-forgetting", "Neighbor", "reference.over_neighbor", True),
    Column("PrivLeak", "Min-40%", "reference.privleak", True),
)
ZERO_IS_BEST = ("reference.privleak",)
#: Columns of opt-in sets (``verbmem``): shown only where a run evaluated them, so older tables stay as they were
OPT_IN_PATHS = tuple(column.path for s in SETS.values() if not s.in_all for column in s.columns)
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass
class Cell:
    """A table value: ``None`` where the set was not evaluated; rank 1 = best, 2 = second, 0 = neither; the 95%
    bootstrap interval over targets (``low``, ``high``) where there are at least two."""

    value: float | None
    rank: int = 0
    low: float | None = None
    high: float | None = None
    empty: str = "-"  # "n/a" where the value cannot exist (no reference), not merely unevaluated

    @property
    def text(self) -> str:
        return self.empty if self.value is None else f"{self.value:.1f}"

    @property
    def spread(self) -> str:
        """``± h`` with h the interval's half-width (empty without an interval)."""
        return "" if self.low is None or self.high is None else f" ± {(self.high - self.low) / 2:.1f}"


def bootstrap_interval(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean of ``values`` (None with fewer than two)."""
    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(data), size=(samples, len(data)))
    means = data[picks].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pool_seeds(runs: Sequence[Run]) -> list[Run]:
    """Runs that differ only in their seed (a grid's ``seeds``, ``rwku unlearn --seed``) become one row over them all,
    labelled by the first with its seed suffix replaced; other runs stay as they are."""
    pooled: list[Run] = []
    groups: dict[tuple, Run] = {}
    for run in runs:
        if run.seed is None:
            pooled.append(run)
            continue
        group = (run.folder, run.method, run.mode, run.setting, run.layers, tuple(sorted(run.sweep.items())))
        if group not in groups:
            label = run.label.replace(f"-seed{run.seed}", "")
            groups[group] = Run(label=label, name=run.name, folder=run.folder, units={}, seeds=[], reference=run.reference)
            pooled.append(groups[group])
        groups[group].seeds.append(run)
    for row in groups.values():
        common = set.intersection(*(set(r.units) for r in row.seeds))
        row.units = {slug: unit for slug, unit in row.seeds[0].units.items() if slug in common}
        row.label = f"{row.label} ({len(row.seeds)} seeds)" if len(row.seeds) > 1 else row.seeds[0].label
    return pooled


def target_values(run: Run, before: Run | None, slugs: Sequence[str], column: Column) -> list[float]:
    """The column's value on each target that has one (the RWKU score against the run's own "before"); a row pooling
    seeds gives one value per seed and target."""
    if run.seeds:
        return [v for member in run.seeds for v in target_values(member, before, slugs, column)]
    values = []
    for slug in slugs:
        summary = run.units[slug].summary
        if column in REFERENCE_COLUMNS:
            value = reference_value(run, before, slug, column)
        elif column is SCORE_COLUMN:
            score = rwku_score(before.units[slug].summary, summary) if before is not None and slug in before.units and not run.is_before else None
            value = None if score is None else score["score"]
        else:
            value = get_path(summary, column.path)
        if value is not None:
            values.append(float(value))
    return values


def reference_value(run: Run, before: Run | None, slug: str, column: Column) -> float | None:
    """A reference column's value on one target: the run's unit against its folder's "before" and reference units
    (the "before" row against itself); None without either."""
    if before is None or slug not in before.units or slug not in run.reference:
        return None
    scores = reference_scores(before.units[slug].summary, run.units[slug].summary, run.reference[slug].summary)
    return scores[column.path.removeprefix("reference.")]


@dataclass
class Table1:
    """Rows (run, cells), the unit slugs averaged over, and a note when some run had units others lack."""

    rows: list[tuple[Run, list[Cell]]]
    slugs: list[str]
    note: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)  # run label -> units left out of its mean
    role: str = ""  # "planted" or "control": the targets of that role only (a planted model); "" every target

    @property
    def targets_text(self) -> str:
        """What the mean is over: "3 target(s)", "2 planted target(s)", "1 control target(s)"."""
        return f"{len(self.slugs)} {self.role + ' ' if self.role else ''}target(s)"
    columns: tuple[Column, ...] = COLUMNS  # with REFERENCE_COLUMNS where a folder has a never-taught reference


def single_target_units(run: Run) -> list[str]:
    """The run's one-target units (a "before" run also holds the pooled units of batch runs: those are not rows)."""
    return [slug for slug, unit in run.units.items() if len(unit.targets) == 1]


def common_slugs(runs: Sequence[Run]) -> list[str]:
    """The one-target units every run has, in the first run's order (none for no runs)."""
    if not runs:
        return []
    common = set.intersection(*(set(single_target_units(r)) for r in runs))
    return [s for s in single_target_units(runs[0]) if s in common]


def unit_roles(runs: Sequence[Run]) -> dict[str, str]:
    """Unit slug -> the role its summaries record (``planted``, ``control``: a planted model), where one does."""
    return {slug: str(unit.summary["role"]) for run in runs for slug, unit in run.units.items() if unit.summary.get("role")}


def table_roles(runs: Sequence[Run]) -> list[str]:
    """The roles Table 1 shows apart (planted first, then the control); empty when no unit records one."""
    found = set(unit_roles(runs).values())
    return [role for role in ("planted", "control") if role in found]


def shared_slugs(runs: Sequence[Run], role: str = "") -> tuple[list[str], dict[str, list[str]]]:
    """Targets every run has (in the first run's order; of ``role`` only, when given), and per run the targets it
    has beyond them."""
    order = common_slugs(runs)
    if role:
        roles = unit_roles(runs)
        order = [slug for slug in order if roles.get(slug) == role]
    if not order:
        listing = "; ".join(f"{r.label}: {', '.join(single_target_units(r)) or 'none'}" for r in runs)
        raise RwkuError(f"no target is shared by all runs ({listing}); choose runs with --runs or rerun the missing targets")
    extra = {r.label: [s for s in single_target_units(r) if s not in order] for r in runs}
    return order, {label: left for label, left in extra.items() if left}


def rank_column(values: Sequence[float | None], lower_is_better: bool, eligible: Sequence[bool],
                zero_is_best: bool = False) -> list[int]:
    """1 for the best printed value, 2 for the next distinct one, among eligible non-missing cells (``zero_is_best``:
    the closest to 0)."""
    if zero_is_best:
        values, lower_is_better = [None if v is None else abs(v) for v in values], True
    shown = sorted({round(v, 1) for v, ok in zip(values, eligible) if ok and v is not None}, reverse=not lower_is_better)
    place = {v: i + 1 for i, v in enumerate(shown[:2])}
    return [place.get(round(v, 1), 0) if ok and v is not None else 0 for v, ok in zip(values, eligible)]


def is_table_row(run: Run, variants: bool = False) -> bool:
    """Table 1 holds the single-target runs; swept and layer-window variants only with ``variants`` (by default
    they are drawn in the trade-off and layer figures, over their own targets, as in the paper); batch and sequential
    runs have figures and tables of their own."""
    return run.setting == "single" and (variants or (not run.sweep and run.layers is None))


def build_table1(runs: Sequence[Run], variants: bool = False, role: str = "") -> Table1:
    """Rows in the given order; batch-setting runs pool targets and are drawn in the batch figure instead. ``role``
    (``planted``, ``control``): the mean over the targets of that role only."""
    rows = pool_seeds([r for r in runs if is_table_row(r, variants)])
    if not rows:
        raise RwkuError("no single-target run to tabulate (only batch-setting or variant runs; try --table-variants)")
    slugs, extra = shared_slugs(rows, role)
    if role:  # the other role's targets are shown in their own table, not "left out"
        extra = {}
    befores = [next((b for b in runs if b.is_before and b.folder == r.folder), None) for r in rows]
    columns, scored = [], []
    chosen = (*COLUMNS, *REFERENCE_COLUMNS) if any(r.reference for r in rows) else COLUMNS
    for column in chosen:
        per_target = [target_values(r, b, slugs, column) for r, b in zip(rows, befores)]
        if column is SCORE_COLUMN:
            scored = [len(v) for r, b, v in zip(rows, befores, per_target) if not r.is_before and b is not None]
        values = [sum(v) / len(v) if v else None for v in per_target]
        ranks = rank_column(values, column.lower_is_better, [not r.is_before and column not in UNRANKED for r in rows],
                            column.path in ZERO_IS_BEST)
        intervals = [bootstrap_interval(v) or (None, None) for v in per_target]
        empty = "n/a" if column in REFERENCE_COLUMNS else "-"
        columns.append([Cell(v, k, *ci, empty=empty) for v, k, ci in zip(values, ranks, intervals)])
    note = ""
    if extra:
        note = (f"Averaged over the {len(slugs)} target(s) all runs share; left out: "
                + "; ".join(f"{label}: {', '.join(left)}" for label, left in extra.items()) + ".")
    if scored and min(scored) < len(slugs):
        note = (f"{note} RWKU score: {len(slugs) - min(scored)} of {len(slugs)} target(s) left out (forget All before "
                "under 5, nothing to forget; or forget, neighbour or utility not evaluated).").strip()
    shown = [i for i, column in enumerate(chosen)  # an opt-in set's column (VerbMem) only where some run has it
             if column.path not in OPT_IN_PATHS or any(cell.value is not None for cell in columns[i])]
    chosen, columns = tuple(chosen[i] for i in shown), [columns[i] for i in shown]
    if set(REFERENCE_COLUMNS) & set(chosen):
        note = (f"{note} Removed %, Over-forgetting and PrivLeak: against the never-taught reference (the planted model's "
                "base), over the planted targets; n/a without a reference (the control target, a model not planted).").strip()
    return Table1(rows=[(run, [col[i] for col in columns]) for i, run in enumerate(rows)], slugs=slugs, note=note, extra=extra,
                  columns=chosen, role=role)


def arrow(column: Column) -> str:
    return "→0" if column.path in ZERO_IS_BEST else "↓" if column.lower_is_better else "↑"


def build_tables(runs: Sequence[Run], variants: bool = False) -> list[Table1]:
    """Table 1 over every shared target; for a planted model one per role instead: the planted targets' (the
    headline, first), then the control's."""
    roles = table_roles(runs)
    return [build_table1(runs, variants, role) for role in roles] if roles else [build_table1(runs, variants)]


def header(column: Column) -> str:
    return f"{column.group} {column.label} {arrow(column)}"


def to_markdown(table: Table1) -> str:
    """GitHub Markdown: best in bold, second underlined (``<u>``), arrows in the header."""
    lines = ["| Run | " + " | ".join(header(c) for c in table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for run, cells in table.rows:
        marked = [(f"**{c.text}**" if c.rank == 1 else f"<u>{c.text}</u>" if c.rank == 2 else c.text) + c.spread for c in cells]
        lines.append(f"| {run.label} | " + " | ".join(marked) + " |")
    footer = f"\nMean (± half the 95% bootstrap interval over targets) over {table.targets_text}: {', '.join(table.slugs)}."
    legend = "".join(f"\n- `{name}`: {what} ({paper})" for name, what, paper in method_legend([run for run, _ in table.rows]))
    return "\n".join(lines) + "\n" + footer + (f" {table.note}" if table.note else "") + ("\n\nMethods:" + legend if legend else "") + "\n"


def to_csv(table: Table1) -> str:
    """Plain numbers (full precision) plus a rank column per value, for spreadsheets and scripts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = table.columns
    writer.writerow(["run", "n_targets"] + [header(c) for c in columns] + [f"rank {header(c)}" for c in columns]
                    + [f"{bound} {header(c)}" for c in columns for bound in ("ci95 low", "ci95 high")])
    for run, cells in table.rows:
        writer.writerow([run.label, len(table.slugs)] + ["" if c.value is None else repr(c.value) for c in cells]
                        + [c.rank or "" for c in cells]
                        + ["" if bound is None else repr(bound) for c in cells for bound in (c.low, c.high)])
    return buffer.getvalue()


def to_json(table: Table1) -> dict[str, Any]:
    return {
        "columns": [{"group": g, "name": n, "path": p, "lower_is_better": lower} for g, n, p, lower in table.columns],
        "targets": table.slugs,
        "role": table.role,
        "note": table.note,
        "left_out": table.extra,
        "methods": [{"method": name, "description": what, "paper": paper} for name, what, paper in method_legend([r for r, _ in table.rows])],
        "rows": [{"run": run.label, "folder": str(run.folder), "model": run.model, "method": run.method,
                  "values": {p: c.value for (_, _, p, _), c in zip(table.columns, cells)},
                  "ci95": {p: [c.low, c.high] for (_, _, p, _), c in zip(table.columns, cells)},
                  "ranks": {p: c.rank for (_, _, p, _), c in zip(table.columns, cells)}} for run, cells in table.rows],
    }


def latex_arrow(column: Column) -> str:
    return "to 0" if column.path in ZERO_IS_BEST else "downarrow" if column.lower_is_better else "uparrow"


def latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                          ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text


def to_latex(table: Table1) -> str:
    """A booktabs table: grouped headers with arrows, ``\\textbf`` best, ``\\underline`` second."""
    groups: list[tuple[str, int]] = []
    for group, _, _, _ in table.columns:
        if groups and groups[-1][0] == group:
            groups[-1] = (group, groups[-1][1] + 1)
        else:
            groups.append((group, 1))
    lines = [r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule",
             " & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{g}}}" for g, n in groups) + r" \\"]
    start = 2
    rules = []
    for _, n in groups:
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    lines.append(" ".join(rules))
    lines.append("Run & " + " & ".join(rf"{c.label} $\{latex_arrow(c)}$" for c in table.columns) + r" \\")
    lines.append(r"\midrule")
    for run, cells in table.rows:
        marked = [(rf"\textbf{{{c.text}}}" if c.rank == 1 else rf"\underline{{{c.text}}}" if c.rank == 2 else c.text)
                  + (rf" $\pm$ {c.spread[3:]}" if c.spread else "") for c in cells]
        lines.append(latex_escape(run.label) + " & " + " & ".join(marked) + r" \\")
        if run.is_before:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
