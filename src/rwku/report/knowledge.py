"""The memorization part of a report (paper Fig. 1): results of ``rwku memorization`` found beside the runs.

A folder given to ``rwku report`` contributes when it, or one of its sub-folders, holds ``memorization.json``; a
folder holding only that (no runs) is not a run folder. The report then draws Fig. 1 from the per-text values, shows
the per-source table and each target's knowledge score (sortable, and beside each target's forget score).
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rwku.knowledge.memorization import FIGURE, RESULTS, load_results, panels_from


@dataclass
class Memorization:
    """One ``memorization.json`` (every model in it) with its per-text rows; ``prefix`` tells folders apart."""

    folder: Path
    payload: dict[str, Any]
    rows: list[dict[str, Any]]
    prefix: str = ""

    def labels(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, model entry) per model: the model name, with the folder in front when several folders have results."""
        return [(f"{self.prefix}{model}", entry) for model, entry in self.payload["models"].items()]


def memorization_folders(folder: Path) -> list[Path]:
    """``folder`` and its direct sub-folders that hold a memorization result."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [folder] if (folder / RESULTS).is_file() else []
    return found + sorted(c for c in folder.iterdir() if c.is_dir() and (c / RESULTS).is_file())


def collect_memorization(folders: Sequence[Path]) -> list[Memorization]:
    found = [m for f in folders for m in memorization_folders(f)]
    found = list(dict.fromkeys(Path(f).resolve() for f in found))
    results = [Memorization(folder, *load_results(folder)) for folder in found]
    if len(results) > 1:
        for result in results:
            result.prefix = f"{result.folder.name}: "
    return results


def knowledge_by_label(results: Sequence[Memorization]) -> dict[str, dict[str, dict[str, Any]]]:
    """label -> target slug -> {number, name, em, nll, count}."""
    return {label: dict(entry.get("targets") or {}) for r in results for label, entry in r.labels()}


def memorization_figure(out: Path, payload: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[Path]:
    """Fig. 1 of one ``rwku memorization`` run into ``out`` (PNG and SVG); no files when no text was scored."""
    from rwku.report.figures import memorization_scatter, save_figure

    figure = memorization_scatter(panels_from(payload, rows))
    return [] if figure is None else save_figure(figure, out, FIGURE)


def figure_panels(results: Sequence[Memorization]) -> list[dict[str, Any]]:
    return [panel for r in results for panel in panels_from(r.payload, r.rows, r.prefix)]


def number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def knowledge_csv(results: Sequence[Memorization]) -> str:
    """Every source mean and every target's knowledge, one row each: the numbers behind the section."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "kind", "name", "target_number", "count", "em", "nll"])
    for result in results:
        for label, entry in result.labels():
            for name, values in entry.get("sources", {}).items():
                writer.writerow([label, "source", name, "", values.get("count"), values.get("em"), values.get("nll")])
            for slug, values in (entry.get("targets") or {}).items():
                writer.writerow([label, "target", slug, values.get("number"), values.get("count"), values.get("em"),
                                 values.get("nll")])
    return buffer.getvalue()


def sources_html(results: Sequence[Memorization]) -> str:
    rows = []
    for result in results:
        window = result.payload.get("window")
        for label, entry in result.labels():
            for name, values in entry.get("sources", {}).items():
                rows.append(f"<tr><td>{html.escape(label)}</td><td>{html.escape(name)}</td><td class=\"num\">{window}</td>"
                            f"<td class=\"num\">{values.get('count')}</td><td class=\"num\">{number(values.get('em'))}</td>"
                            f"<td class=\"num\">{number(values.get('nll'))}</td></tr>")
    return ('<table id="memorization-table" class="sortable"><thead><tr><th>model</th><th>source</th><th>window</th>'
            f'<th>texts</th><th>EM ↑</th><th>NLL ↓</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def knowledge_html(results: Sequence[Memorization]) -> str:
    """Targets × models (EM, NLL, passages), best known first by the first model's EM; headers sort on click."""
    knowledge = knowledge_by_label(results)
    labels = [label for label, targets in knowledge.items() if targets]
    if not labels:
        return ""
    slugs = list(dict.fromkeys(slug for label in labels for slug in knowledge[label]))
    first = knowledge[labels[0]]
    slugs.sort(key=lambda s: -(first.get(s, {}).get("em") or -1.0))
    heads = "".join(f"<th>EM ↑<br>{html.escape(label)}</th><th>NLL ↓<br>{html.escape(label)}</th>" for label in labels)
    rows = []
    for slug in slugs:
        cells = "".join(f'<td class="num">{number(knowledge[label].get(slug, {}).get(key))}</td>'
                        for label in labels for key in ("em", "nll"))
        count = first.get(slug, {}).get("count", "")
        rows.append(f"<tr><td>{html.escape(slug)}</td><td class=\"num\">{count}</td>{cells}</tr>")
    return (f'<table id="knowledge-table" class="sortable"><thead><tr><th>target</th><th>passages</th>{heads}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def section_html(results: Sequence[Memorization], figure: str) -> str:
    """The report's memorization section: Fig. 1, the source means, the per-target knowledge."""
    knowledge = knowledge_html(results)
    knowledge_part = (f'<h3>Knowledge per target</h3><p class="meta">The same EM and NLL over each target\'s passages: '
                      f'which targets the model knows before unlearning (best known first; click a header to sort).</p>'
                      f'<div class="scroll">{knowledge}</div>') if knowledge else ""
    return (f'<section id="memorization"><h2>What the model knows (memorization, paper Fig. 1)</h2>'
            f'<p class="meta">Per text, its first tokens under teacher forcing: EM is the share the greedy prediction gets '
            f'right, NLL the mean token NLL (nats); means over texts. RWKU passages should sit at high EM and low NLL, '
            f'unseen text at the opposite corner. Numbers: <a href="knowledge.csv">knowledge.csv</a>.</p>'
            f'<div class="figs">{figure}</div><div class="scroll">{sources_html(results)}</div>{knowledge_part}</section>')
