"""Table 1 per kind of target: when the runs of a report hold targets of several kinds (people and places, say),
each kind gets its own Table 1 over its own shared targets, besides the one over every target.

A unit's kind is what its summary records (``kinds``, written for targets that are not people); a unit without it
is a person's, as every unit stored before targets had kinds. Pooled (batch-setting) units are not Table-1 rows and
are left out here as there.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Sequence

from rwku.data.schema import PERSON, TARGET_KINDS
from rwku.errors import RwkuError
from rwku.report.collect import Run, Unit
from rwku.report.html import table1_html
from rwku.report.table import Table1, build_table1, is_table_row, single_target_units


def unit_kind(unit: Unit) -> str:
    """The kind of a one-target unit's target (``person`` where its summary names none)."""
    kinds = unit.summary.get("kinds")
    return str(kinds[0]) if kinds else PERSON


def runs_of_kind(runs: Sequence[Run], kind: str) -> list[Run]:
    """Each run cut to its one-target units of ``kind`` (and their per-epoch points); runs without any left out."""
    cut = []
    for run in runs:
        units = {slug: run.units[slug] for slug in single_target_units(run) if unit_kind(run.units[slug]) == kind}
        if units:
            cut.append(dataclasses.replace(run, units=units, epochs={s: e for s, e in run.epochs.items() if s in units},
                                           seeds=[]))
    return cut


def kinds_in(runs: Sequence[Run], variants: bool = False) -> list[str]:
    """The kinds of the targets Table 1's runs hold, in :data:`TARGET_KINDS` order."""
    found = {unit_kind(run.units[slug]) for run in runs if is_table_row(run, variants) for slug in single_target_units(run)}
    return [kind for kind in TARGET_KINDS if kind in found]


def kind_tables(runs: Sequence[Run], variants: bool = False) -> tuple[dict[str, Table1], dict[str, str]]:
    """Table 1 of each kind when the runs mix kinds (nothing when they hold one kind), and for a kind whose runs
    share no target, why it has no table."""
    kinds = kinds_in(runs, variants)
    tables: dict[str, Table1] = {}
    missing: dict[str, str] = {}
    for kind in kinds if len(kinds) > 1 else []:
        try:
            tables[kind] = build_table1(runs_of_kind(runs, kind), variants)
        except RwkuError as exc:
            missing[kind] = str(exc)
    return tables, missing


def section_html(tables: dict[str, Table1], missing: dict[str, str]) -> str:
    """The report page's "Table 1 per kind" section (empty when the runs hold one kind)."""
    if not tables and not missing:
        return ""
    parts = ['<section id="table1-kinds"><h2>Table 1 per kind of target</h2>'
             '<p class="meta">The runs hold targets of several kinds: each kind averaged over its own shared targets.</p>']
    for kind, table in tables.items():
        note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
        parts.append(f'<h3>{html.escape(kind)} · mean over {len(table.slugs)} target(s) · '
                     f'<a href="table1-{kind}.md">Markdown</a> · <a href="table1-{kind}.csv">CSV</a> · '
                     f'<a href="table1-{kind}.json">JSON</a></h3>{note}'
                     f'<div class="scroll">{table1_html(table, f"table1-{kind}-table")}</div>')
    parts += [f'<h3>{html.escape(kind)}</h3><p class="note">{html.escape(why)}</p>' for kind, why in missing.items()]
    return "".join(parts) + "</section>\n"
