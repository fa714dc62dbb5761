"""Figures of the RWKU paper drawn from stored runs: attack types (Fig. 4), trade-off curves (Fig. 3), batch sizes
(Fig. 5), layer windows (Fig. 7), MIA ROC curves and per-target spreads; and the recovered % of each audit.

Every figure function takes the runs (and the unit slugs to average over) and returns a matplotlib ``Figure``, or
``None`` when the runs hold nothing for it, so a report can draw whatever its folders support. Colours come from
:func:`run_colors` over *all* the runs given, so one run has one colour in every figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patheffects import withStroke  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rwku.evaluation import metrics  # noqa: E402
from rwku.evaluation.sets import TABLE1_COLUMNS  # noqa: E402
from rwku.evaluation.table1 import mean_rwku_score  # noqa: E402
from rwku.io import write_atomic  # noqa: E402
from rwku.report.collect import Run  # noqa: E402
from rwku.results import get_path  # noqa: E402

FORGET = "forget.All"
NEIGHBOR = "neighbor.All"
BEFORE_COLORS = ("#000000", "#6e6e6e", "#a8a8a8")
SYMBOLS = {"alpha": "α", "beta": "β", "gamma": "γ"}
PANEL_SIZE = (4.4, 3.6)
NOTE_FONT = 7
HALO = [withStroke(linewidth=4, foreground="white")]  # keeps a line visible over bars of its own colour
LEGEND_ROWS = 14  # entries per legend column, so a long legend stays within the figure height


# ---------------------------------------------------------------- colours and labels


def _palette() -> list[str]:
    """tab10 then the light tab20 shades, greys left out: grey is kept for the ``before`` runs."""
    tab10 = [to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    tab20 = [to_hex(c) for c in matplotlib.colormaps["tab20"].colors]
    return [c for i, c in enumerate(tab10) if i != 7] + [c for i, c in enumerate(tab20) if i % 2 and i != 15]


def is_before_label(label: str) -> bool:
    """``before`` or ``<folder>/before``: the untouched model's run, drawn in grey as the reference."""
    return label.rsplit("/", 1)[-1] == "before"


def run_colors(labels: Iterable[str]) -> dict[str, str]:
    """One colour per run label, in order: ``before`` runs black/grey, others from a qualitative palette.

    Figures call this over every run they were given (not only the ones they draw), so colours agree across figures.
    """
    palette, colors, n_before, n_other = _palette(), {}, 0, 0
    for label in labels:
        if label in colors:
            continue
        if is_before_label(label):
            colors[label] = BEFORE_COLORS[min(n_before, len(BEFORE_COLORS) - 1)]
            n_before += 1
        else:
            colors[label] = palette[n_other % len(palette)]
            n_other += 1
    return colors


def metric_label(path: str) -> str:
    """``"forget.All"`` -> ``"Forget All ↓"``: the Table-1 name with the better direction."""
    for group, column, dotted, lower in TABLE1_COLUMNS:
        if dotted == path:
            return f"{group} {column} {'↓' if lower else '↑'}"
    return f"{path} ↓" if path.startswith("forget.") else path


def _family_name(run: Run, runs: Sequence[Run]) -> str:
    """``"ga (lora)"``, with the batch setting, and the folder name when another folder has the same kind of run."""
    name = f"{run.method} ({run.mode})" if run.mode else run.method
    if run.setting == "batch":
        name += " batch"
    if any(r.folder != run.folder and r.family[1:] == run.family[1:] for r in runs):
        name += f" [{run.folder.name}]"
    return name


def _format_value(key: str, value: Any) -> str:
    shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return f"{SYMBOLS.get(key, key)}={shown}"


def _sortable(value: Any) -> tuple[int, Any]:
    """Numbers before strings, each in their own order (swept values may mix types)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


# ---------------------------------------------------------------- run selection


def _has(run: Run, slugs: Sequence[str]) -> bool:
    """A run is averaged over ``slugs`` only if it has all of them: a mean over fewer units would not compare."""
    return bool(slugs) and all(s in run.units for s in slugs)


def _single(runs: Sequence[Run], slugs: Sequence[str], shown: Collection[str] | None = None) -> list[Run]:
    """Single-target runs holding every slug; only those labelled in ``shown`` when given (the Table-1 rows)."""
    return [r for r in runs if r.setting == "single" and _has(r, slugs) and (shown is None or r.label in shown)]


def _before_of(run: Run, runs: Sequence[Run]) -> Run | None:
    """The ``before`` run stored beside ``run`` (same folder, so same model and targets)."""
    return next((r for r in runs if r.is_before and r.folder == run.folder and r is not run), None)


def _plain_run(family: tuple[str, str, str, str], runs: Sequence[Run], slugs: Sequence[str]) -> Run | None:
    """The family's run with neither sweep nor layer window: the reference its variants are compared with."""
    return next((r for r in runs if r.family == family and not r.sweep and r.layers is None and not r.is_before
                 and _has(r, slugs)), None)


# ---------------------------------------------------------------- shared drawing helpers


@dataclass
class Curve:
    """One line across metric panels: a shared x per point and the summary the panel's metric is read from."""

    label: str
    color: str
    x: list[float | None]
    summaries: list[Mapping[str, Any]]
    notes: list[str] = field(default_factory=list)
    dashed: bool = False
    marker: str = "o"
    note_offset: tuple[int, int] = (3, 3)  # points; curves that can share a point put their notes on opposite sides


def _panels(n: int, title: str, size: tuple[float, float] = PANEL_SIZE) -> tuple[Figure, list[Axes]]:
    fig, axes = plt.subplots(1, n, figsize=(size[0] * n + 1.6, size[1]), layout="constrained", squeeze=False)
    fig.suptitle(title)
    return fig, list(axes[0])


def _figure_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend for all panels, outside on the right (centred, clear of the title) so it never covers data."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside right center", fontsize="small",
                   ncols=math.ceil(len(seen) / LEGEND_ROWS))


def _draw_curves(axes: Sequence[Axes], paths: Sequence[str], curves: Sequence[Curve]) -> None:
    """Each curve in each panel, y = the panel's metric; points where the metric is missing are left out."""
    for ax, path in zip(axes, paths):
        for curve in curves:
            points = [(x, get_path(s, path), note) for x, s, note in
                      zip(curve.x, curve.summaries, curve.notes or [""] * len(curve.x))]
            points = [(x, y, note) for x, y, note in points if x is not None and y is not None]
            if not points:
                continue
            xs, ys, notes = zip(*points)
            ax.plot(xs, ys, color=curve.color, marker=curve.marker, markersize=4, label=curve.label,
                    linestyle="--" if curve.dashed else "-")
            for x, y, note in points:
                if note:
                    ax.annotate(note, (x, y), xytext=curve.note_offset, textcoords="offset points",
                                fontsize=NOTE_FONT, color=curve.color)
        ax.set_ylabel(metric_label(path))
        ax.margins(0.1)  # room for the point notes inside the frame
        ax.grid(alpha=0.3)


def _grouped_bars(ax: Axes, categories: Sequence[str], groups: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
    """Bars per category, one per group (label, colour, category -> value); a missing value leaves its slot empty."""
    width = 0.8 / max(len(groups), 1)
    for i, (label, color, values) in enumerate(groups):
        present = [(j, values[c]) for j, c in enumerate(categories) if values.get(c) is not None]
        xs = [j - 0.4 + width * (i + 0.5) for j, _ in present]
        ax.bar(xs, [v for _, v in present], width=width, color=color, label=label)
    ax.set_xticks(range(len(categories)), categories, rotation=25, ha="right")
    ax.grid(axis="y", alpha=0.3)


# ---------------------------------------------------------------- audits: how much comes back


def audit_recovery(runs: Sequence[Run], table: Any) -> Figure | None:
    """Recovered % per audit, a bar per run (an :class:`rwku.report.audits.AuditTable`); a run whose original model
    is under 5 points above it (n/a) leaves its slot empty."""
    if table is None or all(cell.recovered is None for _, cells in table.rows for cell in cells.values()):
        return None
    colors = run_colors(r.label for r in runs)
    fig, (ax,) = _panels(1, "How much of the forgotten knowledge each audit brings back",
                         size=(max(6.0, 1.3 * len(table.audits) + 2), 4.2))
    _grouped_bars(ax, table.audits, [(run.label, colors[run.label], {name: cell.recovered for name, cell in cells.items()})
                                     for run, cells in table.rows])
    width = 0.8 / len(table.rows)
    for i, (_, cells) in enumerate(table.rows):  # an empty slot says why: nothing measurable was removed
        for j, name in enumerate(table.audits):
            if cells[name].recovered is None:
                ax.text(j - 0.4 + width * (i + 0.5), 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=NOTE_FONT)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(100, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("audit")
    ax.set_ylabel(f"recovered % (mean over {len(table.slugs)} targets)")
    _figure_legend(fig, [ax])
    return fig


# ---------------------------------------------------------------- Fig. 4: adversarial attack types


def attack_types(runs: Sequence[Run], slugs: Sequence[str], shown: Collection[str] | None = None) -> Figure | None:
    """Forget score per adversarial attack type (Fig. 4): which attacks still extract the forgotten knowledge."""
    colors = run_colors(r.label for r in runs)
    by_run = [(r, get_path(r.mean(slugs), "forget.AA_by_type") or {}) for r in _single(runs, slugs, shown)]
    types = list(dict.fromkeys(t for _, by_type in by_run for t, v in by_type.items() if v is not None))
    if not types:
        return None
    fig, (ax,) = _panels(1, "Forget score by adversarial attack type (forget ↓ = better unlearning)",
                         size=(max(6.0, 1.1 * len(types) + 2), 4.2))
    _grouped_bars(ax, types, [(r.label, colors[r.label], by_type) for r, by_type in by_run])
    ax.set_xlabel("adversarial attack type")
    ax.set_ylabel(f"forget AA score ↓ (mean over {len(slugs)} targets)")
    _figure_legend(fig, [ax])
    return fig


# ---------------------------------------------------------------- Fig. 3: efficacy vs locality / utility


def _rwku_score(run: Run, runs: Sequence[Run], slugs: Sequence[str]) -> float | None:
    """The run's RWKU score over ``slugs`` against the "before" stored beside it (None without one)."""
    before = _before_of(run, runs)
    if before is None:
        return None
    pairs = [(before.units[s].summary, run.units[s].summary) for s in slugs if s in before.units and s in run.units]
    return mean_rwku_score(pairs).get("score")


def _scored(text: str, score: float | None) -> str:
    return text if score is None else f"{text} · RWKU {score:.0f}"


def _epoch_curves(runs: Sequence[Run], slugs: Sequence[str], colors: Mapping[str, str]) -> list[Curve]:
    """before -> epoch 1 -> ... -> final epoch, per run that recorded epoch points."""
    curves = []
    for run in runs:
        means = run.epoch_means(slugs) if _has(run, slugs) and not run.is_before else {}
        if not means:
            continue
        before = _before_of(run, runs)
        points = ([(0, before.mean(slugs))] if before is not None and _has(before, slugs) else []) + list(means.items())
        label = run.label + ("" if _rwku_score(run, runs, slugs) is None else f" (RWKU score {_rwku_score(run, runs, slugs):.1f})")
        curves.append(Curve(label, colors[run.label], [get_path(s, FORGET) for _, s in points],
                            [s for _, s in points], [str(k) for k, _ in points]))
    return curves


def _sweep_curves(runs: Sequence[Run], slugs: Sequence[str], colors: Mapping[str, str]) -> list[Curve]:
    """One curve per family and swept keys, through the family's plain run too, in order of the swept value."""
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        if run.sweep and _has(run, slugs):
            groups.setdefault((run.family, run.layers, tuple(run.sweep)), []).append(run)
    curves = []
    for (family, layers, keys), members in groups.items():
        plain = _plain_run(family, runs, slugs)
        if plain is not None and layers is None and all(plain.setting_value(k) is not None for k in keys):
            members = [plain, *members]
        values = {r.label: tuple(r.sweep[k] if r.sweep else r.setting_value(k) for k in keys) for r in members}
        members = sorted(members, key=lambda r: tuple(_sortable(v) for v in values[r.label]))
        summaries = [r.mean(slugs) for r in members]
        curves.append(Curve(f"{_family_name(members[0], runs)}: {', '.join(SYMBOLS.get(k, k) for k in keys)} sweep",
                            colors[(plain or members[0]).label], [get_path(s, FORGET) for s in summaries], summaries,
                            [_scored(", ".join(_format_value(k, v) for k, v in zip(keys, values[r.label])),
                                     _rwku_score(r, runs, slugs)) for r in members],
                            dashed=True, marker="s", note_offset=(3, -9)))
    return curves


def trade_off(runs: Sequence[Run], slugs: Sequence[str], utility: str = "utility.Gen") -> Figure | None:
    """Forgetting against locality and utility (Fig. 3): what each epoch or swept value costs in kept knowledge."""
    colors = run_colors(r.label for r in runs)
    curves = _epoch_curves(runs, slugs, colors) + _sweep_curves(runs, slugs, colors)
    if not curves:
        return None
    fig, axes = _panels(2, "Efficacy vs locality and utility (better: up-left); "
                           "points: epoch (0 = before) or swept value")
    _draw_curves(axes, [NEIGHBOR, utility], curves)
    for ax, path in zip(axes, [NEIGHBOR, utility]):
        ax.set_xlabel(f"{metric_label(FORGET)} (efficacy)")
        ax.set_title(f"{'locality' if path == NEIGHBOR else 'utility'} vs forgetting", fontsize="medium")
    _figure_legend(fig, axes)
    return fig


# ---------------------------------------------------------------- Fig. 5: batch sizes


def batch_curves(runs: Sequence[Run], utility: str = "utility.Gen") -> Figure | None:
    """Forget, neighbour and utility against the number of targets forgotten at once (Fig. 5)."""
    colors = run_colors(r.label for r in runs)
    batch = [r for r in runs if r.setting == "batch" and not r.is_before]
    if not batch:
        return None
    curves = []
    sizes_by_before: dict[str, dict[str, int]] = {}  # before label -> its slugs shared with a batch run -> size
    for run in batch:
        units = sorted(run.units.values(), key=lambda u: len(u.targets))
        curves.append(Curve(run.label, colors[run.label], [len(u.targets) for u in units], [u.summary for u in units]))
        before = _before_of(run, runs)
        if before is not None:
            sizes = sizes_by_before.setdefault(before.label, {})
            sizes.update({u.slug: len(u.targets) for u in units if u.slug in before.units})
    for before in (r for r in runs if r.label in sizes_by_before):
        sizes = sizes_by_before[before.label]
        slugs = sorted(sizes, key=sizes.__getitem__)
        if slugs:
            curves.append(Curve(before.label, colors[before.label], [sizes[s] for s in slugs],
                                [before.units[s].summary for s in slugs], dashed=True))
    paths = [FORGET, NEIGHBOR, utility]
    fig, axes = _panels(3, "Batch unlearning: scores vs number of targets forgotten at once")
    _draw_curves(axes, paths, curves)
    for ax in axes:
        ax.set_xlabel("targets per batch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _figure_legend(fig, axes)
    return fig


# ---------------------------------------------------------------- Fig. 7: layer windows


def _window_label(window: tuple[int, int]) -> str:
    return f"{window[0]}–{window[1]}"


def layer_windows(runs: Sequence[Run], slugs: Sequence[str], utility: str = "utility.Gen") -> Figure | None:
    """Scores when only a window of layers is trained (Fig. 7), against training all layers (dashed)."""
    colors = run_colors(r.label for r in runs)
    families: dict[tuple[str, str, str, str], dict[tuple[int, int], Run]] = {}
    for run in runs:
        if run.layers is not None and _has(run, slugs):
            families.setdefault(run.family, {}).setdefault(run.layers, run)
    if not families:
        return None
    categories = [_window_label(w) for w in sorted({w for by_window in families.values() for w in by_window})]
    bars = []  # per family: name, colour, window label -> mean summary, mean summary of all layers trained
    for family, by_window in families.items():
        plain, first = _plain_run(family, runs, slugs), next(iter(by_window.values()))
        bars.append((_family_name(first, runs), colors[(plain or first).label],
                     {_window_label(w): r.mean(slugs) for w, r in by_window.items()},
                     plain.mean(slugs) if plain is not None else None))
    paths = [FORGET, NEIGHBOR, utility]
    fig, axes = _panels(3, "Training one window of layers: scores per window (dashed: all layers trained)")
    for ax, path in zip(axes, paths):
        for name, color, _, full in bars:
            if full is not None and get_path(full, path) is not None:
                ax.axhline(get_path(full, path), color=color, linestyle="--", linewidth=1.6, zorder=3,
                           path_effects=HALO, label="all layers" if len(bars) == 1 else f"{name}: all layers")
        _grouped_bars(ax, categories, [(name, color, {w: get_path(s, path) for w, s in means.items()})
                                       for name, color, means, _ in bars])
        ax.set_xlabel("trained layers")
        ax.set_ylabel(metric_label(path))
    _figure_legend(fig, axes)
    return fig


# ---------------------------------------------------------------- MIA ROC curves


def _mia_scores(run: Run, slugs: Sequence[str], attack: str) -> tuple[list[float], list[float]]:
    """FM and RM attack scores of a run, pooled over its units in ``slugs`` that stored MIA items."""
    pooled: dict[str, list[float]] = {"FM": [], "RM": []}
    for slug in slugs:
        unit = run.units.get(slug)
        for text in (unit.items.get("mia") or []) if unit is not None else []:
            score = (text.get("attacks") or {}).get(attack)
            if text.get("set") in pooled and score is not None:
                pooled[text["set"]].append(score)
    return pooled["FM"], pooled["RM"]


def mia_roc(runs: Sequence[Run], slugs: Sequence[str], attacks: Sequence[str] = ("loss", "zlib", "mink++_0.2"),
            shown: Collection[str] | None = None) -> Figure | None:
    """ROC curves of each MIA attack separating forget (FM) from retain (RM) texts: unlearning should push AUC down."""
    colors = run_colors(r.label for r in runs)
    single = [r for r in runs if r.setting == "single" and (shown is None or r.label in shown)]
    rocs = {a: [(r, metrics.roc_curve(*_mia_scores(r, slugs, a))) for r in single] for a in attacks}
    rocs = {a: [(r, roc) for r, roc in pairs if not math.isnan(roc[2])] for a, pairs in rocs.items()}
    if not any(rocs.values()):
        return None
    fig, axes = _panels(len(attacks), "MIA ROC: forget texts (FM) as members vs retain texts (RM); "
                        "AUC ↓ = FM forgotten", size=(3.8, 3.9))
    aucs: dict[str, list[str]] = {}
    for ax, attack in zip(axes, attacks):
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
        drawn = {run.label: auc for run, (_, _, auc) in rocs[attack]}
        for run, (fpr, tpr, auc) in rocs[attack]:
            ax.plot(fpr, tpr, color=colors[run.label], linewidth=1.4, label=run.label)
        for run in single:
            aucs.setdefault(run.label, []).append(f"{drawn[run.label]:.2f}" if run.label in drawn else "–")
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="false positive rate (RM)",
               ylabel="true positive rate (FM)", title=attack)
    # one legend for all panels, each run with its AUC per attack: a per-panel legend grows with the runs
    handles = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(handles.values()), [f"{label}  {' / '.join(aucs[label])}" for label in handles],
               loc="outside right center", fontsize="small", title=f"run  AUC {' / '.join(attacks)}",
               title_fontsize="small", ncols=math.ceil(len(handles) / LEGEND_ROWS))
    return fig


# ---------------------------------------------------------------- per-target spread


def per_target(runs: Sequence[Run], slugs: Sequence[str], shown: Collection[str] | None = None) -> Figure | None:
    """Forget and neighbour scores of each target (box + points): a mean can hide targets that were not forgotten."""
    colors = run_colors(r.label for r in runs)
    chosen = [r for r in runs if r.setting == "single" and any(s in r.units for s in slugs)
              and (shown is None or r.label in shown)]
    if not chosen:  # also when no slug is given
        return None
    rng = np.random.default_rng(0)
    fig, axes = _panels(2, f"Per-target scores over {len(slugs)} targets (forget ↓, neighbor ↑)",
                        size=(max(4.4, 0.7 * len(chosen) + 1.5), 3.8))
    for ax, path in zip(axes, [FORGET, NEIGHBOR]):
        for i, run in enumerate(chosen):
            values = metrics.finite_scores(get_path(run.units[s].summary, path) for s in slugs if s in run.units)
            if not len(values):
                continue
            box = ax.boxplot(values, positions=[i], widths=0.6, patch_artist=True, showfliers=False)
            box["boxes"][0].set(facecolor=colors[run.label], alpha=0.35)
            box["medians"][0].set(color=colors[run.label])
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=12, color=colors[run.label],
                       edgecolors="black", linewidths=0.3, zorder=3, label=run.label)
        ax.set_xticks(range(len(chosen)), [r.label for r in chosen], rotation=30, ha="right")
        ax.set_ylabel(metric_label(path))
        ax.grid(axis="y", alpha=0.3)
    return fig


# ---------------------------------------------------------------- Fig. 1: memorization


#: Fixed colours of the built-in sources; user sources take the next free palette colours in order.
SOURCE_COLORS = {"rwku": "#d62728", "unseen": "#1f77b4"}


def source_colors(names: Iterable[str]) -> dict[str, str]:
    """One colour per source name, the built-in ones fixed, so a source looks the same in every panel and report."""
    free = [c for c in _palette() if c not in SOURCE_COLORS.values()]
    colors: dict[str, str] = {}
    for name in names:
        if name not in colors:
            colors[name] = SOURCE_COLORS.get(name) or free[sum(n not in SOURCE_COLORS for n in colors) % len(free)]
    return colors


def memorization_scatter(panels: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Exact memorization against mean token NLL (paper Fig. 1), one panel per model: a point per text, one colour
    per source, each source's mean marked by a large diamond and listed in the panel's empty upper-right corner
    (high EM with high NLL does not occur). ``panels`` hold ``title``, ``points`` (source -> [(nll, em)]) and
    ``means`` (source -> {em, nll, count})."""
    panels = [p for p in panels if any(m.get("em") is not None for m in p["means"].values())]
    if not panels:
        return None
    colors = source_colors(name for p in panels for name in p["means"])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels) + 1.6, 4.2), layout="constrained", squeeze=False,
                             sharex=True, sharey=True)
    fig.suptitle("What the model knows: exact memorization vs. NLL per text (paper Fig. 1)")
    right = 0.0
    for ax, panel in zip(axes[0], panels):
        # the largest source first, so smaller ones stay visible on top of its cloud
        for name, points in sorted(panel["points"].items(), key=lambda item: -len(item[1])):
            if points:
                nll, em = zip(*points)
                right = max(right, *nll)
                ax.scatter(nll, em, s=10, alpha=0.3 if len(points) > 300 else 0.6, color=colors[name], linewidths=0,
                           rasterized=len(points) > 300)
        lines = []
        for name, mean in panel["means"].items():
            if mean.get("em") is None:
                continue
            right = max(right, mean["nll"])
            ax.scatter([mean["nll"]], [mean["em"]], s=120, marker="D", color=colors[name], edgecolors="black",
                       linewidths=1.2, zorder=4)
            ax.annotate(name, (mean["nll"], mean["em"]), xytext=(8, 6), textcoords="offset points", fontsize=8,
                        fontweight="bold", color=colors[name], path_effects=HALO, zorder=5)
            lines.append(f"{name}: EM {mean['em']:.2f}, NLL {mean['nll']:.2f} (n={mean.get('count', 0)})")
        ax.text(0.98, 0.98, "source means ◆\n" + "\n".join(lines), transform=ax.transAxes, ha="right", va="top",
                fontsize=7, bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#c8c8c8", "alpha": 0.9})
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel("mean token NLL (nats), lower = better known")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("exact memorization (EM), higher = better known")
    axes[0][0].set_ylim(-0.02, 1.02)
    axes[0][0].set_xlim(0, max(right, 1.0) * 1.08)
    names = list(dict.fromkeys(name for p in panels for name in p["means"]))
    legend = [plt.Line2D([], [], marker="o", linestyle="", color=colors[n], markersize=6) for n in names]
    fig.legend(legend, names, loc="outside right center", fontsize="small", title="source", title_fontsize="small")
    return fig


# ---------------------------------------------------------------- saving


def save_figure(fig: Figure, folder: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` into ``folder`` (each renamed into place); close ``fig`` to free it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    try:
        for path in paths:
            fmt = path.suffix[1:]
            write_atomic(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150))
    finally:
        plt.close(fig)
    return paths
