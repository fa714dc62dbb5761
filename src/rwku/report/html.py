"""The self-contained HTML report: Table 1, every figure, per-target scores and a searchable case-study view.

One file, no network: figures are embedded as SVG data URIs, the case studies as JSON rendered by a small script
(one target at a time, or every probe matching a search across all targets), so a report over many targets stays
light in the browser. Everything shown is escaped: model outputs are arbitrary text.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Sequence

from rwku import __version__
from rwku.audits import AUDITS
from rwku.evaluation.sets import PROBE_SETS
from rwku.report.collect import Run, method_legend
from rwku.report.table import Table1, header
from rwku.results import get_path

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#fafbfc}
header,section{max-width:1400px;margin:0 auto;padding:12px 24px}
header{border-bottom:1px solid #dde2e8;background:#fff;max-width:none}
h1{font-size:22px;margin:6px 0} h2{font-size:18px;margin:18px 0 8px;border-bottom:1px solid #e3e7ec;padding-bottom:4px}
nav a{margin-right:14px} .meta{color:#5b6675}
table{border-collapse:collapse;background:#fff} th,td{border:1px solid #e1e5ea;padding:4px 7px;vertical-align:top}
th{background:#f1f4f7;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700} td.second{text-decoration:underline} tr.before td{background:#f6f7f9}
.note{color:#7a4b00;background:#fff6e0;padding:6px 10px;border-radius:4px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #e1e5ea;border-radius:6px;padding:8px}
figure img{width:100%;height:auto} figcaption{color:#5b6675;font-size:13px}
.controls{display:flex;gap:16px;align-items:center;margin:8px 0;flex-wrap:wrap}
#case-search{width:420px;padding:5px 8px} .scroll{overflow-x:auto}
.out{white-space:pre-wrap;max-width:360px;font-family:ui-monospace,Menlo,monospace;font-size:12px}
.score{display:inline-block;min-width:34px;text-align:center;border-radius:3px;padding:0 4px;margin-top:3px;font-size:12px}
table.sortable th{cursor:pointer} h3{font-size:15px;margin:14px 0 6px}
"""

SORT_SCRIPT = """
// click a header of a sortable table: sort its rows by that column (numbers as numbers), again to reverse
for (const sortable of document.querySelectorAll('table.sortable')) {
  sortable.querySelectorAll('thead th').forEach((th, index) => th.addEventListener('click', () => {
    const body = sortable.tBodies[0];
    const down = th.dataset.order !== 'desc';
    sortable.querySelectorAll('thead th').forEach(other => delete other.dataset.order);
    th.dataset.order = down ? 'desc' : 'asc';
    const key = row => { const text = row.cells[index].textContent.trim(); const n = parseFloat(text);
                         return isNaN(n) ? text : n; };
    const rows = [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
      const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return down ? -order : order; });
    body.append(...rows);
  }));
}
"""

SCRIPT = """
const data = JSON.parse(document.getElementById('case-data').textContent);
const select = document.getElementById('case-target');
const search = document.getElementById('case-search');
const table = document.getElementById('case-table');
const count = document.getElementById('case-count');
const LIMIT = 400;
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }
// green = the wanted outcome: a low score on a forget probe, a high one on a neighbour probe
function scoreColour(s, set) { const good = set === 'neighbor' ? s / 100 : 1 - s / 100; return `hsl(${Math.round(120 * good)},70%,88%)`; }
function render() {
  const query = search.value.trim().toLowerCase();
  const targets = query ? Object.keys(data.cases) : [select.value];
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const h of ['target', 'set', 'level / type', 'probe', 'answer', ...data.runs]) {
    const th = document.createElement('th'); th.textContent = h; head.appendChild(th);
  }
  const body = table.createTBody();
  let shown = 0, matched = 0;
  for (const target of targets) {
    for (const probe of data.cases[target] || []) {
      if (query) {
        const hay = [target, probe.query, probe.answer, ...Object.values(probe.outputs).map(o => o[0])].join(' ').toLowerCase();
        if (!hay.includes(query)) continue;
      }
      matched += 1;
      if (shown >= LIMIT) continue;
      shown += 1;
      const row = body.insertRow();
      cell(row, target); cell(row, probe.set); cell(row, probe.level + ' / ' + probe.type);
      cell(row, probe.query, 'out'); cell(row, probe.answer, 'out');
      for (const run of data.runs) {
        const td = row.insertCell();
        const found = probe.outputs[run];
        if (!found) { td.textContent = '–'; continue; }
        const text = document.createElement('div'); text.className = 'out'; text.textContent = found[0];
        const badge = document.createElement('span'); badge.className = 'score';
        badge.textContent = found[1] === null ? 'n/a' : found[1].toFixed(1);
        if (found[1] !== null) badge.style.background = scoreColour(found[1], probe.set);
        td.append(text, badge);
      }
    }
  }
  count.textContent = query ? `${matched} probe(s) match across ${targets.length} target(s)` +
    (matched > shown ? `; the first ${shown} are shown` : '') : `${matched} probe(s) of ${select.value}`;
}
for (const target of Object.keys(data.cases)) {
  const option = document.createElement('option'); option.value = target; option.textContent = target; select.appendChild(option);
}
select.addEventListener('change', render);
search.addEventListener('input', render);
render();
"""


def audit_columns(rows: Sequence[Run], slugs: Sequence[str]) -> list[tuple[Run, str]]:
    """(run, audit) of every audit stored for some shown unit, in run then registry order: one case-study column each."""
    return [(run, name) for run in rows for name in AUDITS if any(name in run.units[s].audits for s in slugs if s in run.units)]


def audit_output(row: dict[str, Any]) -> str:
    """A probe's output under an audit, with the suffix that produced it when there is one."""
    output = str(row.get("output") or "")
    return f"{output}  ⟨suffix: {row['suffix']}⟩" if row.get("suffix") else output


def case_studies(rows: Sequence[Run], slugs: Sequence[str]) -> dict[str, Any]:
    """Per target, every forget/neighbour probe with its answer and each Table-1 row's output and score (Tables 7, 11),
    and each forget probe's output under each audit of those rows (``run · audit``)."""
    cases: dict[str, list[dict[str, Any]]] = {}
    columns = audit_columns(rows, slugs)
    for slug in slugs:
        probes: dict[tuple, dict[str, Any]] = {}
        for run in rows:
            unit = run.units.get(slug)
            for set_name in PROBE_SETS:
                for item in (unit.items.get(set_name, []) if unit else []):
                    key = (set_name, item.get("level"), item.get("type"), item.get("query"))
                    probe = probes.setdefault(key, {"set": set_name, "level": item.get("level"), "type": item.get("type"),
                                                    "query": item.get("query"), "answer": item.get("reference"), "outputs": {}})
                    probe["outputs"][run.label] = [item.get("output", ""), item.get("score")]
        for run, name in columns:
            unit = run.units.get(slug)
            for row in unit.audit_items(name).get("forget", []) if unit else []:
                probe = probes.get(("forget", row.get("level"), row.get("type"), row.get("query")))
                if probe is not None:
                    probe["outputs"][f"{run.label} · {name}"] = [audit_output(row), row.get("score")]
        cases[slug] = list(probes.values())
    return {"runs": [r.label for r in rows] + [f"{run.label} · {name}" for run, name in columns], "cases": cases}


def table1_html(table: Table1, table_id: str = "table1-table") -> str:
    heads = "".join(f"<th>{html.escape(header(c))}</th>" for c in table.columns)
    rows = []
    for run, cells in table.rows:
        tds = "".join(f'<td class="num{" best" if c.rank == 1 else " second" if c.rank == 2 else ""}">{c.text}'
                      f'{f"<small>{html.escape(c.spread)}</small>" if c.spread else ""}</td>' for c in cells)
        rows.append(f'<tr class="{"before" if run.is_before else "run"}"><td>{html.escape(run.label)}</td>{tds}</tr>')
    return f'<table id="{table_id}"><thead><tr><th>Run</th>{heads}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


#: What the report says of a role's table (a planted model: the planted targets' table is the headline).
ROLE_NOTES = {"control": "The control target(s) of the planted model: not planted, known as the base model knows them; "
                         "unlearning a planted target should leave them where they are (Before)."}


def role_tables_html(tables: Sequence[Table1]) -> str:
    """The tables of the other roles (the control), each under its own heading below Table 1."""
    return "".join(f'<h3>{html.escape(t.role.capitalize())} · mean over {html.escape(t.targets_text)}</h3>'
                   f'<p class="meta">{html.escape(ROLE_NOTES.get(t.role, ""))} Downloads: <a href="table1-{t.role}.csv">CSV</a> · '
                   f'<a href="table1-{t.role}.tex">LaTeX</a></p>'
                   f'<div class="scroll">{table1_html(t, f"table1-{t.role}-table")}</div>' for t in tables)


def legend_html(table: Table1) -> str:
    """Each method of the table's rows: what it does and the paper it comes from (the paper's seven first)."""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(what)}</td><td>{html.escape(paper)}</td></tr>"
                   for name, what, paper in method_legend([run for run, _ in table.rows]))
    return f'<table id="method-legend"><thead><tr><th>Method</th><th>What it does</th><th>Paper</th></tr></thead><tbody>{rows}</tbody></table>' if rows else ""


def per_target_html(table: Table1, paths: Sequence[str], knowledge: dict[str, dict[str, Any]] | None = None) -> str:
    """Each shared target's values of every row; with memorization results, each model's knowledge EM of the target
    beside them (click a header to sort)."""
    shown, slugs = [run for run, _ in table.rows], table.slugs
    known = {label: targets for label, targets in (knowledge or {}).items() if any(s in targets for s in slugs)}
    heads = "".join(f"<th>{html.escape(r.label)}<br>{html.escape(p)}</th>" for p in paths for r in shown)
    heads += "".join(f"<th>knowledge EM<br>{html.escape(label)}</th>" for label in known)
    rows = []
    for slug in slugs:
        values = [get_path(r.units[slug].summary, p) for p in paths for r in shown]
        tds = "".join(f'<td class="num">{"-" if v is None else f"{v:.1f}"}</td>' for v in values)
        for targets in known.values():
            em = (targets.get(slug) or {}).get("em")
            tds += f'<td class="num">{"-" if em is None else f"{em:.3f}"}</td>'
        rows.append(f"<tr><td>{html.escape(slug)}</td>{tds}</tr>")
    return (f'<table id="per-target-table" class="sortable"><thead><tr><th>target</th>{heads}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def figure_html(name: str, caption: str, svg: Path) -> str:
    data = base64.b64encode(svg.read_bytes()).decode("ascii")
    return (f'<figure id="fig-{html.escape(name)}"><img alt="{html.escape(caption)}" src="data:image/svg+xml;base64,{data}">'
            f'<figcaption>{html.escape(caption)} · <a href="figures/{html.escape(name)}.png">PNG</a> · '
            f'<a href="figures/{html.escape(name)}.svg">SVG</a></figcaption></figure>')


def render_report(title: str, runs: Sequence[Run], table: Table1 | None, figures: Sequence[tuple[str, str, Path]],
                  cases: dict[str, Any], generated: str, memorization: str = "",
                  knowledge: dict[str, dict[str, Any]] | None = None, audits: str = "", kinds: str = "",
                  role_tables: Sequence[Table1] = ()) -> str:
    """The whole page; ``figures`` are (name, caption, svg path); ``memorization`` the memorization section's HTML
    (``knowledge``: label -> target -> its knowledge score, shown in the per-target table); ``kinds`` the section of
    Table 1 per kind of target (:mod:`rwku.report.kinds`); ``role_tables`` the control's Table 1 of a planted model,
    shown below the planted targets' (``table``). Without ``table`` (only memorization results were given) the page
    holds the memorization section alone."""
    models = sorted({r.model for r in runs})
    slugs = table.slugs if table else []
    meta = (f"{len(runs)} run(s) · model {', '.join(models) or '-'} · {len(slugs)} shared target(s) · "
            f"made {generated} by rwku {__version__}")
    nav = ('<a href="#table1">Table 1</a>' + ('<a href="#table1-kinds">Per kind</a>' if kinds else "")
           + ('<a href="#audits">Audits</a>' if audits else "")
           + '<a href="#figures">Figures</a><a href="#per-target">Per target</a><a href="#cases">Case studies</a>') if table else ""
    nav += '<a href="#memorization">Memorization</a>' if memorization else ""
    body = ""
    if table:
        note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
        figs = "".join(figure_html(*f) for f in figures) or "<p>No figure: the runs hold no data to draw.</p>"
        payload = json.dumps(cases, ensure_ascii=False).replace("</", "<\\/")
        known = " and each model's knowledge EM of the target (see Memorization)" if knowledge else ""
        body = f"""<section id="table1"><h2>Table 1 · mean over {html.escape(table.targets_text)}</h2>
<p class="meta">Bold: best, underlined: second among the unlearning runs (Before is the reference). ↓ lower is better, ↑ higher.
Downloads: <a href="table1.md">Markdown</a> · <a href="table1.csv">CSV</a> · <a href="table1.json">JSON</a> · <a href="table1.tex">LaTeX</a></p>
{note}<div class="scroll">{table1_html(table)}</div>{role_tables_html(role_tables)}
<h3>Methods</h3>{legend_html(table)}</section>
{kinds}{audits}<section id="figures"><h2>Figures</h2><div class="figs">{figs}</div></section>
<section id="per-target"><h2>Per target</h2>
<p class="meta">Forget All and neighbour All of every Table-1 row on every shared target{known}; click a header to sort;
every column in <a href="per_target.csv">per_target.csv</a>.</p>
<div class="scroll">{per_target_html(table, ("forget.All", "neighbor.All"), knowledge)}</div></section>
<section id="cases"><h2>Case studies</h2>
<p class="meta">Each probe's answer and every run's output with its ROUGE-L recall (paper Tables 7 and 11); green marks
the wanted outcome (forget probes: low, neighbour probes: high).</p>
<div class="controls"><label>Target <select id="case-target"></select></label>
<input id="case-search" type="search" placeholder="Search probes, answers and outputs in every target"></div>
<p id="case-count" class="meta"></p><div class="scroll"><table id="case-table"></table></div></section>
<script id="case-data" type="application/json">{payload}</script>
"""
    script = (SCRIPT if table else "") + SORT_SCRIPT
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<header><h1>{html.escape(title)}</h1><p class="meta">{html.escape(meta)}</p>
<nav>{nav}</nav></header>
{body}{memorization}
<script>{script}</script>
</body></html>
"""
