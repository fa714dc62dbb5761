"""The never-taught reference: knowledge removed, over-forgetting and PrivLeak on made-up numbers; reference units
in the plan of a planted model (and none for a model that was not planted); Table 1's reference columns with the
control's n/a."""

from __future__ import annotations

import json

import pytest

from rwku.data import RwkuData
from rwku.evaluation.reference import (
    PRIVLEAK_ATTACK,
    REFERENCE_RUN,
    knowledge_removed,
    privleak,
    reference_scores,
    shortfall,
)
from rwku.evaluation.settings import RunSettings
from rwku.knowledge.planting import RECIPE_FILE, planted_record
from rwku.report.collect import collect_runs
from rwku.report.table import REFERENCE_COLUMNS, build_table1, to_markdown
from report_fixtures import config, summary, write_unit


def scores(forget_all: float, neighbor_all: float, auc: float, parts: tuple[float, float, float] | None = None) -> dict:
    fb, qa, aa = parts or (forget_all, forget_all, forget_all)
    return {"forget": {"FB": fb, "QA": qa, "AA": aa, "All": forget_all}, "neighbor": {"All": neighbor_all},
            "mia": {"attacks": {PRIVLEAK_ATTACK: {"auc": auc}}}}


def test_knowledge_removed_by_hand():
    assert knowledge_removed(before=60.0, after=30.0, reference=20.0) == pytest.approx(75.0)  # 30 of 40 taught points
    assert knowledge_removed(before=60.0, after=10.0, reference=20.0) == pytest.approx(125.0)  # below the reference
    assert knowledge_removed(before=60.0, after=65.0, reference=20.0) == pytest.approx(-12.5)
    assert knowledge_removed(before=20.0, after=10.0, reference=20.0) is None  # before == reference: n/a
    assert knowledge_removed(before=15.0, after=10.0, reference=20.0) is None  # nothing taught
    assert knowledge_removed(before=None, after=10.0, reference=5.0) is None


def test_over_forgetting_and_privleak_by_hand():
    assert shortfall(after=12.0, floor=20.0) == pytest.approx(8.0)
    assert shortfall(after=25.0, floor=20.0) == 0.0
    assert shortfall(after=None, floor=20.0) is None
    assert privleak(0.8, 0.5) == pytest.approx(60.0)  # still more familiar than the never-taught model: leaks
    assert privleak(0.4, 0.5) == pytest.approx(-20.0)  # less familiar than never seen: over-unlearned
    assert privleak(0.7, None) is None and privleak(0.7, 0.0) is None


def test_reference_scores_of_one_target():
    before, after, reference = scores(60, 50, 0.9, (70, 50, 60)), scores(15, 40, 0.6, (10, 20, 15)), scores(20, 45, 0.5, (30, 10, 20))
    got = reference_scores(before, after, reference)
    assert got["removed.FB"] == pytest.approx(100 * (70 - 10) / (70 - 30))
    assert got["removed.QA"] == pytest.approx(100 * (50 - 20) / (50 - 10))
    assert got["removed.AA"] == pytest.approx(100 * (60 - 15) / (60 - 20))
    assert got["removed.All"] == pytest.approx(100 * (60 - 15) / (60 - 20))
    assert got["over_forget"] == pytest.approx(5.0)  # 15 is 5 points under the reference's 20
    assert got["over_neighbor"] == pytest.approx(10.0)  # neighbour 50 -> 40
    assert got["privleak"] == pytest.approx(20.0)  # (0.6 - 0.5) / 0.5
    assert set(reference_scores(before, after, None).values()) == {None}  # no reference: every value n/a


def test_planted_record_of_a_plant_folder_and_of_the_demo(tmp_path):
    folder = tmp_path / "planted"
    folder.mkdir()
    (folder / RECIPE_FILE).write_text(json.dumps({"key": "k", "base": "some/base", "planted": ["Isaac Newton"],
                                                  "control": "Wolfgang Amadeus Mozart"}))
    assert planted_record(str(folder)) == {"base": "some/base", "planted": ["Isaac Newton"], "control": "Wolfgang Amadeus Mozart"}
    assert planted_record(str(tmp_path)) is None  # a folder without a recipe: not planted
    assert planted_record("smollm2-135m") is None
    demo = planted_record("smollm2-135m-demo")
    assert demo["base"] == "smollm2-135m" and demo["control"] not in demo["planted"] and demo["planted"]


def test_reference_units_only_for_planted_targets(tmp_path, tiny_model_dir):
    from rwku.unlearn import UnlearnJob

    planted_dir = tmp_path / "planted"
    planted_dir.mkdir()
    for file in tiny_model_dir.iterdir():
        (planted_dir / file.name).write_bytes(file.read_bytes())
    data = RwkuData.open(["demo"])
    targets = data.select("all")
    (planted_dir / RECIPE_FILE).write_text(json.dumps({"key": "k", "base": str(tiny_model_dir), "planted": [t.name for t in targets[:-1]],
                                                       "control": targets[-1].name}))
    planted, base = (RunSettings(model=str(folder), sets=("forget",), device="cpu") for folder in (planted_dir, tiny_model_dir))
    job = UnlearnJob(run=planted, data=data, targets=targets, methods=["ga"])
    references = [t for t in job.tasks() if t.run == REFERENCE_RUN]
    assert [t.slug for t in references] == [t.slug for t in targets[:-1]]  # the control has none
    assert all(t.job.run.model == str(tiny_model_dir) and t.key["model"]["spec"] == str(tiny_model_dir) for t in references)
    assert not [t for t in UnlearnJob(run=base, data=data, targets=targets, methods=["ga"]).tasks() if t.run == REFERENCE_RUN]
    off = UnlearnJob(run=planted, data=data, targets=targets, methods=["ga"], reference=False)
    assert not [t for t in off.tasks() if t.run == REFERENCE_RUN]


def write_planted_folder(root):
    """Two planted targets (reference units) and a control (none): before, ga-lora and the reference."""
    per_run = {  # slug -> (forget All, neighbour All)
        "before": {"1_Ann_A": (60.0, 50.0), "2_Bob_B": (40.0, 70.0), "3_Cy_C": (30.0, 50.0)},
        "ga-lora": {"1_Ann_A": (10.0, 40.0), "2_Bob_B": (30.0, 70.0), "3_Cy_C": (20.0, 50.0)},
        REFERENCE_RUN: {"1_Ann_A": (20.0, 50.0), "2_Bob_B": (20.0, 60.0)},
    }
    names = {"1_Ann_A": "Ann A", "2_Bob_B": "Bob B", "3_Cy_C": "Cy C"}
    aucs = {"before": 0.9, "ga-lora": 0.6, REFERENCE_RUN: 0.5}  # Min-40% FM-vs-RM AUC
    for run, units in per_run.items():
        method = "before" if run == "before" else "reference" if run == REFERENCE_RUN else "ga"
        for slug, (forget, neighbor) in units.items():
            values = {"forget.All": forget, "forget.FB": forget, "forget.QA": forget, "forget.AA": forget, "neighbor.All": neighbor}
            unit = summary(values, config(method), [names[slug]])
            unit["mia"]["attacks"][PRIVLEAK_ATTACK] = {"auc": aucs[run]}
            write_unit(root / run / slug, unit)
    return root


def cells_of(table, label):
    return next(cells for run, cells in table.rows if run.label == label)


def test_table1_reference_columns_with_the_controls_na(tmp_path):
    runs = collect_runs([write_planted_folder(tmp_path / "planted")])
    assert [r.name for r in runs] == ["before", "ga-lora"]  # the reference is no row
    table = build_table1(runs)
    assert table.slugs == ["1_Ann_A", "2_Bob_B", "3_Cy_C"]  # the control stays in the paper's columns
    columns = {c.path: i for i, c in enumerate(table.columns)}
    ga = cells_of(table, "ga-lora")
    # Ann: (60-10)/(60-20) = 125 %, Bob: (40-30)/(40-20) = 50 %; Cy (control) left out: mean 87.5
    assert ga[columns["reference.removed.All"]].value == pytest.approx(87.5)
    # over-forgetting: Ann 10 under the reference's 20 -> 10, Bob 30 over 20 -> 0; neighbour: Ann 50 -> 40 = 10, Bob 0
    assert ga[columns["reference.over_forget"]].value == pytest.approx(5.0)
    assert ga[columns["reference.over_neighbor"]].value == pytest.approx(5.0)
    assert ga[columns["reference.privleak"]].value == pytest.approx(20.0)  # (0.6 - 0.5) / 0.5 on both planted targets
    before = cells_of(table, "before")
    assert before[columns["reference.removed.All"]].value == pytest.approx(0.0)
    assert "Removed % All" in to_markdown(table) and "PrivLeak Min-40% →0" in to_markdown(table)


def test_no_reference_shows_na_and_no_reference_columns_by_default(tmp_path):
    root = write_planted_folder(tmp_path / "planted")
    for unit in (root / REFERENCE_RUN).iterdir():
        (unit / "summary.json").unlink()
    runs = collect_runs([root])
    assert all(not r.reference for r in runs)
    table = build_table1(runs)
    assert not set(REFERENCE_COLUMNS) & set(table.columns)  # a folder without a reference: the paper's table
    only_control = write_planted_folder(tmp_path / "control")
    for slug in ("1_Ann_A", "2_Bob_B"):
        for run in ("before", "ga-lora"):
            (only_control / run / slug / "summary.json").unlink()
    runs = collect_runs([only_control])
    table = build_table1(runs)
    columns = {c.path: i for i, c in enumerate(table.columns)}
    ga = cells_of(table, "ga-lora")
    assert ga[columns["reference.removed.All"]].value is None and ga[columns["reference.removed.All"]].text == "n/a"
