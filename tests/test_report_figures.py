"""Report figures: each draws exactly the hand-made numbers it is given, and is None when there is nothing to draw."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from report_fixtures import config, items, summary, write_unit

from rwku.evaluation.metrics import roc_auc, roc_curve
from rwku.report import figures
from rwku.report.collect import Run, collect_runs
from rwku.evaluation.table1 import mean_rwku_score

SLUGS = ["t1", "t2"]
TARGETS = {"t1": ["Alice"], "t2": ["Bob"]}


def by_type(prefix: float, role: float) -> dict[str, float | None]:
    """Two attack types with values; "multiple choice" was not evaluated anywhere, so no figure shows it."""
    return {"prefix injection": prefix, "role play": role, "multiple choice": None}


def scores(forget: float, neighbor: float, gen: float) -> dict[str, float]:
    return {"forget.All": forget, "neighbor.All": neighbor, "utility.Gen": gen}


def write_run(root: Path, name: str, cfg: dict, per_slug: dict[str, tuple], mia: dict[str, tuple] | None = None,
              epochs: dict[str, dict[int, tuple]] | None = None) -> None:
    """per_slug: slug -> (forget, neighbor, gen, prefix, role); mia: slug -> (FM scores, RM scores)."""
    for slug, (forget, neighbor, gen, prefix, role) in per_slug.items():
        unit_items = None
        if mia and slug in mia:
            unit_items = items(slug, ["a", "b", "c"], [0.0, 0.0, 0.0], list(mia[slug][0]), list(mia[slug][1]))
        unit = summary(scores(forget, neighbor, gen), cfg, TARGETS[slug], by_type(prefix, role))
        write_unit(root / name / slug, unit, unit_items)
        for epoch, (e_forget, e_neighbor, e_gen) in ((epochs or {}).get(slug) or {}).items():
            write_unit(root / name / slug / "epochs" / str(epoch),
                       summary(scores(e_forget, e_neighbor, e_gen), cfg, TARGETS[slug], by_type(0, 0)))


def make_runs(root: Path) -> list[Run]:
    """One experiment folder (before, epochs, an alpha sweep, layer windows) and one batch folder under ``root``."""
    exp = root / "exp"
    write_run(exp, "before", config("before"), {"t1": (80, 70, 60, 80, 70), "t2": (60, 50, 40, 60, 50)},
              mia={"t1": ([3, 2], [0, 1]), "t2": ([4], [1])})
    write_run(exp, "ga-lora", config("ga"), {"t1": (20, 60, 55, 20, 10), "t2": (40, 40, 35, 30, 20)},
              mia={"t1": ([3, 2, 1], [1, 0]), "t2": ([5], [2])},
              epochs={"t1": {1: (50, 65, 58), 2: (30, 62, 56)}, "t2": {1: (70, 45, 38), 2: (50, 42, 36)}})
    for alpha, forget in ((2.0, 10), (0.5, 40)):
        write_run(exp, f"ga-lora-alpha{alpha:g}", config("ga", sweep={"alpha": alpha}, alpha=alpha),
                  {s: (forget, 45, 45, 0, 0) for s in SLUGS})
    for window, forget in (((4, 8), 25), ((0, 4), 35)):
        write_run(exp, f"ga-full-layers{window[0]}-{window[1]}", config("ga", mode="full", layers=list(window)),
                  {s: (forget, 55, 50, 0, 0) for s in SLUGS})
    write_run(exp, "ga-full", config("ga", mode="full"), {s: (15, 30, 30, 0, 0) for s in SLUGS})

    batch = root / "batch"
    sizes = {"b_one": ["A"], "a_two": ["A", "B"], "c_three": ["A", "B", "C"]}  # name order differs from size order
    for slug, targets in sizes.items():
        n = len(targets)
        unit = summary(scores(10 * n, 60 - n, 50 - n), config("ga", setting="batch"), targets)
        write_unit(batch / "ga-lora-batch" / slug, unit)
        if n > 1:  # the before run has only two of the three pooled units
            write_unit(batch / "before" / slug, summary(scores(90, 70, 60), config("before"), targets))
    return collect_runs([exp, batch])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    return make_runs(tmp_path_factory.mktemp("fig"))


@pytest.fixture(scope="module")
def empty_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    """A lone before run: no attack types evaluated, no epochs, sweeps, layers, batches or MIA items."""
    root = tmp_path_factory.mktemp("empty") / "exp"
    for slug in SLUGS:
        write_unit(root / "before" / slug, summary(scores(80, 70, 60), config("before"), TARGETS[slug],
                                                   {"prefix injection": None}))
    return collect_runs([root])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def lines_by_label(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def bars_by_label(ax) -> dict[str, list[float]]:
    return {c.get_label(): [p.get_height() for p in c] for c in ax.containers}


# ---------------------------------------------------------------- roc_curve


def test_roc_curve_auc_equals_mann_whitney_with_ties() -> None:
    rng = np.random.default_rng(1)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 25).astype(float)
    fpr, tpr, auc = roc_curve(list(pos), list(neg))
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]  # Mann-Whitney, pair by pair
    assert auc == sum(pairs) / len(pairs) == roc_auc(list(pos), list(neg))
    assert auc == pytest.approx(np.trapezoid(tpr, fpr))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(fpr) == len(np.unique(np.concatenate([pos, neg]))) + 1  # one point per distinct score


def test_roc_curve_separation_and_missing_scores() -> None:
    assert roc_curve([3, 4], [1, 2])[2] == 1.0
    assert roc_curve([1, 2], [3, 4])[2] == 0.0
    assert roc_curve([1.0, float("nan"), None], [1.0, None])[2] == 0.5  # ignored, then one tie
    assert math.isnan(roc_curve([None], [1.0])[2])


# ---------------------------------------------------------------- colours


def test_run_colors_before_grey_and_distinct() -> None:
    colors = figures.run_colors(["exp/before", "ga", "npo", "batch/before", "rt"])
    assert colors["exp/before"] == "#000000" and colors["batch/before"] not in {colors["ga"], colors["npo"]}
    assert len({colors["ga"], colors["npo"], colors["rt"]}) == 3
    assert figures.run_colors(["exp/before", "ga", "npo"])["npo"] == colors["npo"]  # stable for the same order


# ---------------------------------------------------------------- figures


def test_attack_types_bars_are_per_type_means(runs) -> None:
    fig = figures.attack_types(runs, SLUGS)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["prefix injection", "role play"]
    bars = bars_by_label(ax)
    assert bars["exp/before"] == [70, 60] and bars["ga-lora"] == [25, 15]
    assert "batch/before" not in bars and "ga-lora-batch" not in bars  # lacks the slugs / batch setting
    colors = figures.run_colors(r.label for r in runs)
    assert [p.get_facecolor() for p in ax.containers[0]][0][:3] == pytest.approx(plt.matplotlib.colors.to_rgb(
        colors[ax.containers[0].get_label()]))


def test_trade_off_epoch_and_sweep_curves(runs) -> None:
    fig = figures.trade_off(runs, SLUGS)
    assert len(fig.axes) == 2
    neighbor, utility = (lines_by_label(ax) for ax in fig.axes)
    # the final model's RWKU score against the stored "before", in the legend
    by_label = {r.label: r for r in runs}
    score = mean_rwku_score([(by_label["exp/before"].units[s].summary, by_label["ga-lora"].units[s].summary) for s in SLUGS])["score"]
    ga = f"ga-lora (RWKU score {score:.1f})"
    assert neighbor[ga] == ([70, 60, 40, 30], [60, 55, 52, 50])  # before -> epoch 1 -> 2 -> final (3)
    assert utility[ga] == ([70, 60, 40, 30], [50, 48, 46, 45])
    assert neighbor["ga (lora): α sweep"] == ([40, 30, 10], [45, 50, 45])  # α = 0.5, 1 (plain run), 2
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert notes[:4] == ["0", "1", "2", "3"] and [n.split(" · ")[0] for n in notes[4:]] == ["α=0.5", "α=1", "α=2"]
    assert all(" · RWKU " in n for n in notes[4:])  # each swept model's score beside its point


def test_batch_curves_x_is_targets_per_unit(runs) -> None:
    fig = figures.batch_curves(runs)
    assert len(fig.axes) == 3
    forget, neighbor, utility = (lines_by_label(ax) for ax in fig.axes)
    assert forget["ga-lora-batch"] == ([1, 2, 3], [10, 20, 30])
    assert neighbor["ga-lora-batch"][1] == [59, 58, 57] and utility["ga-lora-batch"][1] == [49, 48, 47]
    assert forget["batch/before"] == ([2, 3], [90, 90])
    before_line = next(line for line in fig.axes[0].get_lines() if line.get_label() == "batch/before")
    assert before_line.get_linestyle() == "--"


def test_layer_windows_bars_and_all_layers_line(runs) -> None:
    fig = figures.layer_windows(runs, SLUGS)
    assert len(fig.axes) == 3
    forget = fig.axes[0]
    assert [t.get_text() for t in forget.get_xticklabels()] == ["0–4", "4–8"]
    assert bars_by_label(forget) == {"ga (full)": [35, 25]}
    assert lines_by_label(forget)["all layers"][1] == [15, 15]
    assert bars_by_label(fig.axes[1]) == {"ga (full)": [55, 55]}
    assert bars_by_label(fig.axes[2]) == {"ga (full)": [50, 50]}


def test_mia_roc_pools_units(runs) -> None:
    fig = figures.mia_roc(runs, SLUGS)
    assert len(fig.axes) == 3
    fpr, tpr, auc = roc_curve([3, 2, 1, 5], [1, 0, 2])
    for ax in fig.axes:
        lines = lines_by_label(ax)
        assert lines["ga-lora"] == (list(fpr), list(tpr))
        assert lines["exp/before"][1][-1] == 1.0
        assert len(lines) == 3  # diagonal + the two runs with MIA items
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"ga-lora  {auc:.2f} / {auc:.2f} / {auc:.2f}" in legend and "exp/before  1.00 / 1.00 / 1.00" in legend
    assert fig.legends[0].get_title().get_text() == "run  AUC loss / zlib / mink++_0.2"


def test_per_target_points_are_unit_values(runs) -> None:
    fig = figures.per_target(runs, SLUGS)
    assert len(fig.axes) == 2
    forget, neighbor = ({c.get_label(): list(c.get_offsets()[:, 1]) for c in ax.collections} for ax in fig.axes)
    assert forget["ga-lora"] == [20, 40] and neighbor["ga-lora"] == [60, 40]
    assert forget["exp/before"] == [80, 60] and "ga-lora-batch" not in forget
    again = figures.per_target(runs, SLUGS)
    assert (again.axes[0].collections[0].get_offsets() == fig.axes[0].collections[0].get_offsets()).all()  # jitter


def test_figures_none_without_data(empty_runs) -> None:
    assert figures.attack_types(empty_runs, SLUGS) is None
    assert figures.trade_off(empty_runs, SLUGS) is None
    assert figures.batch_curves(empty_runs) is None
    assert figures.layer_windows(empty_runs, SLUGS) is None
    assert figures.mia_roc(empty_runs, SLUGS) is None
    assert figures.per_target(empty_runs, []) is None
    assert figures.per_target(empty_runs, SLUGS) is not None


def test_save_figure_writes_png_and_svg_atomically(runs, tmp_path) -> None:
    fig = figures.attack_types(runs, SLUGS)
    paths = figures.save_figure(fig, tmp_path / "figs", "attacks")
    assert paths == [tmp_path / "figs" / "attacks.png", tmp_path / "figs" / "attacks.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and "<svg" in paths[1].read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["attacks.png", "attacks.svg"]
    assert not plt.fignum_exists(fig.number)
