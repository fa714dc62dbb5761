"""The Audits table: runs × audits, the forget All under each attack and the recovered %, over the targets every
audited run shares; in Markdown, CSV, JSON and LaTeX like Table 1.

A cell's recovered % is computed from its means over the targets (attack, unlearned and original model on the same
probes), "n/a" when the original model is under 5 points above the unlearned one
(:func:`rwku.audits.base.recovered_percent`). The logit lens's scores are shares of probes ×100, not ROUGE-L.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Sequence

from rwku.audits import AUDITS
from rwku.audits.base import recovered_percent
from rwku.evaluation.metrics import mean_or_none
from rwku.report.collect import Run
from rwku.report.table import common_slugs, latex_escape
from rwku.results import get_path

NUMBERS = ("forget.attack", "forget.unlearned", "forget.original", "neighbor.attack")


@dataclass
class AuditCell:
    """One run under one audit: means over the table's targets (None where the audit did not run)."""

    attack: float | None = None
    unlearned: float | None = None
    original: float | None = None
    neighbor: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def recovered(self) -> float | None:
        return recovered_percent(self.attack, self.unlearned, self.original)

    @property
    def text(self) -> str:
        """``attack (recovered %)``, e.g. ``31.2 (64%)``, ``4.0 (n/a)``, ``-`` where the audit did not run."""
        if self.attack is None:
            return "-"
        return f"{self.attack:.1f} ({'n/a' if self.recovered is None else f'{self.recovered:.0f}%'})"


@dataclass
class AuditTable:
    audits: list[str]
    rows: list[tuple[Run, dict[str, AuditCell]]]
    slugs: list[str]


def audit_cell(run: Run, name: str, slugs: Sequence[str]) -> AuditCell:
    summaries = [run.units[slug].audits[name] for slug in slugs if name in run.units[slug].audits]
    if not summaries:
        return AuditCell()
    values = [mean_or_none([v for s in summaries if (v := get_path(s, path)) is not None]) for path in NUMBERS]
    notes = tuple(dict.fromkeys(s["note"] for s in summaries if s.get("note")))
    return AuditCell(*values, notes=notes)


def build_audit_table(runs: Sequence[Run]) -> AuditTable | None:
    """One row per run whose units hold audits (None when no run does), over the targets all of them audited."""
    audited = [r for r in runs if not r.is_before and any(u.audits for u in r.units.values())]
    order = common_slugs(audited)
    slugs = [s for s in order if all(r.units[s].audits for r in audited)]  # the targets every audited run audited
    if not slugs:
        return None
    names = [name for name in AUDITS if any(name in r.units[s].audits for r in audited for s in slugs)]
    return AuditTable(audits=names, rows=[(r, {n: audit_cell(r, n, slugs) for n in names}) for r in audited], slugs=slugs)


def notes(table: AuditTable) -> list[str]:
    return list(dict.fromkeys(f"{run.label} · {name}: {note}" for run, cells in table.rows
                              for name, cell in cells.items() for note in cell.notes))


def to_markdown(table: AuditTable) -> str:
    lines = ["| Run | " + " | ".join(table.audits) + " |", "|---|" + "---:|" * len(table.audits)]
    lines += [f"| {run.label} | " + " | ".join(cells[n].text for n in table.audits) + " |" for run, cells in table.rows]
    footer = (f"\nForget All under each audit (recovered % of what unlearning removed; n/a: the original model is under 5 "
              f"points above the unlearned one); logit_lens: share of probes ×100 whose answer token is in the top 10 at "
              f"some layer. Mean over {len(table.slugs)} target(s): {', '.join(table.slugs)}.")
    return "\n".join(lines) + "\n" + footer + "".join(f"\n\n{note}" for note in notes(table)) + "\n"


def to_csv(table: AuditTable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "audit", "n_targets", "forget_attack", "forget_unlearned", "forget_original", "recovered_percent",
                     "neighbor_attack"])
    for run, cells in table.rows:
        for name in table.audits:
            cell = cells[name]
            values = (cell.attack, cell.unlearned, cell.original, cell.recovered, cell.neighbor)
            writer.writerow([run.label, name, len(table.slugs)] + ["" if v is None else repr(v) for v in values])
    return buffer.getvalue()


def to_json(table: AuditTable) -> dict[str, Any]:
    return {"audits": table.audits, "targets": table.slugs, "notes": notes(table),
            "rows": [{"run": run.label, "method": run.method,
                      "audits": {n: {"forget_attack": c.attack, "forget_unlearned": c.unlearned, "forget_original": c.original,
                                     "recovered_percent": c.recovered, "neighbor_attack": c.neighbor}
                                 for n, c in cells.items()}} for run, cells in table.rows]}


def to_latex(table: AuditTable) -> str:
    lines = [r"\begin{tabular}{l" + "r" * len(table.audits) + "}", r"\toprule",
             "Run & " + " & ".join(latex_escape(n) for n in table.audits) + r" \\", r"\midrule"]
    lines += [latex_escape(run.label) + " & " + " & ".join(latex_escape(cells[n].text) for n in table.audits) + r" \\"
              for run, cells in table.rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def section_html(table: AuditTable) -> str:
    """The report page's Audits section: the table, its notes and its downloads."""
    import html

    heads = "".join(f"<th>{html.escape(n)}</th>" for n in table.audits)
    rows = "".join(f"<tr><td>{html.escape(run.label)}</td>" + "".join(f'<td class="num">{html.escape(cells[n].text)}</td>'
                                                                     for n in table.audits) + "</tr>"
                   for run, cells in table.rows)
    shown_notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in notes(table))
    return f"""<section id="audits"><h2>Audits · does the forgotten knowledge come back? (mean over {len(table.slugs)} target(s))</h2>
<p class="meta">Forget All under each audit, and in brackets the recovered % of what unlearning removed (n/a: the original
model is under 5 points above the unlearned one); logit_lens: share of probes ×100 whose answer token is in the top 10 at some
layer. Downloads: <a href="audits.md">Markdown</a> · <a href="audits.csv">CSV</a> · <a href="audits.json">JSON</a> ·
<a href="audits.tex">LaTeX</a></p>{shown_notes}
<div class="scroll"><table id="audits-table"><thead><tr><th>Run</th>{heads}</tr></thead><tbody>{rows}</tbody></table></div></section>
"""
