"""rwku report: collecting runs, Table-1 aggregation and marking, the output formats, the HTML page, the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from report_fixtures import TARGETS, VALUES, config, items, make_folder, summary, write_unit

from rwku.errors import RwkuError
from rwku.report.build import ReportOptions, build_report
from rwku.report.collect import collect_runs
from rwku.report.table import COLUMNS, build_table1, rank_column, to_csv, to_json, to_latex, to_markdown


def test_table_averages_over_the_targets_all_runs_share_and_says_so(tmp_path):
    table = build_table1(collect_runs([make_folder(tmp_path / "exp")]))
    assert table.slugs == ["1_Ann_A", "2_Bob_B"]
    assert [run.label for run, _ in table.rows] == ["before", "icu", "ga-lora", "npo-lora", "rt-lora"]  # paper order
    values = {run.label: cells for run, cells in table.rows}
    assert values["ga-lora"][3].value == pytest.approx(15.0)  # forget All, target 3's 90 left out
    assert values["before"][7].value == pytest.approx(60.0)  # neighbor All
    assert "3_Cy_C" in table.note and "ga-lora" in table.note and "npo-lora" not in table.note
    assert values["icu"][3].rank == 0 and values["icu"][7].rank == 0  # worst in both columns


def test_marks_follow_each_column_direction_and_ignore_before(tmp_path):
    table = build_table1(collect_runs([make_folder(tmp_path / "exp")]))
    cells = {run.label: cells for run, cells in table.rows}
    forget = {label: c[3] for label, c in cells.items()}  # lower is better: ga 15.0 ≈ rt 14.98 -> both 15.0
    assert forget["ga-lora"].rank == 1 and forget["rt-lora"].rank == 1 and forget["npo-lora"].rank == 2
    assert forget["before"].rank == 0
    neighbor = {label: c[7] for label, c in cells.items()}  # higher is better: npo 55 > ga 50 = rt 50; before 60 unranked
    assert neighbor["npo-lora"].rank == 1 and neighbor["ga-lora"].rank == 2 and neighbor["rt-lora"].rank == 2
    assert neighbor["before"].rank == 0


def test_rank_column_handles_missing_values_and_ties():
    assert rank_column([3.0, None, 1.0, 1.04, 2.0], True, [True] * 5) == [0, 0, 1, 1, 2]
    assert rank_column([3.0, 5.0, 4.0], False, [True, False, True]) == [2, 0, 1]
    assert rank_column([None, None], False, [True, True]) == [0, 0]


def test_formats_mark_the_same_cells(tmp_path):
    table = build_table1(collect_runs([make_folder(tmp_path / "exp")]))
    markdown = to_markdown(table)
    assert "Forget All ↓" in markdown and "Neighbor All ↑" in markdown and "MIA FM ↑" in markdown and "MIA RM ↓" in markdown
    ga_line = next(line for line in markdown.splitlines() if line.startswith("| ga-lora"))
    # mean ± half the bootstrap interval over the shared targets (10 and 20: resampled means 10, 15, 20)
    assert ga_line.split(" | ")[4] == "**15.0** ± 5.0" and ga_line.split(" | ")[8] == "<u>50.0</u> ± 10.0"
    latex = to_latex(table)
    assert r"\textbf{15.0}" in latex and r"\underline{50.0}" in latex and r"$\downarrow$" in latex and "ga-lora" in latex
    assert latex.count(r"\multicolumn") == 5  # Forget, Neighbor, MIA, Utility, Score
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert float(rows[4]["Forget All ↓"]) == pytest.approx(14.98) and rows[4]["rank Forget All ↓"] == "1"
    payload = to_json(table)
    assert payload["rows"][2]["ranks"]["forget.All"] == 1 and payload["targets"] == ["1_Ann_A", "2_Bob_B"]
    assert payload["rows"][2]["ci95"]["forget.All"] == [10.0, 20.0]
    assert float(rows[2]["ci95 low Forget All ↓"]) == 10.0 and float(rows[2]["ci95 high Forget All ↓"]) == 20.0
    json.dumps(payload)


def test_labels_name_the_folder_when_two_folders_share_run_names_and_patterns_select(tmp_path):
    first = make_folder(tmp_path / "model_a")
    second = make_folder(tmp_path / "model_b")
    labels = [r.label for r in collect_runs([first, second])]
    assert labels == [f"{folder}/{run}" for folder in ("model_a", "model_b") for run in VALUES]
    chosen = [r.label for r in collect_runs([first], ["ga-*"])]
    assert chosen == ["before", "ga-lora"]
    with pytest.raises(RwkuError, match="no run matches"):
        collect_runs([first], ["dpo-*"])


def test_eval_folders_are_one_run_each(tmp_path):
    for model, score in (("small", 30.0), ("large", 20.0)):
        for slug, name in list(TARGETS.items())[:2]:
            write_unit(tmp_path / model / slug, {**summary({"forget.All": score}, {"model": model}, [name]), "method": None})
        write_unit(tmp_path / model, {"model": model, "forget": {"All": score}})  # the folder mean is not a unit
    runs = collect_runs([tmp_path / "small", tmp_path / "large"])
    assert [r.label for r in runs] == ["small", "large"]
    table = build_table1(runs)
    assert [cells[3].value for _, cells in table.rows] == [30.0, 20.0]
    assert [cells[3].rank for _, cells in table.rows] == [2, 1]


def test_bad_inputs_are_one_clear_error(tmp_path):
    with pytest.raises(RwkuError, match="no such folder"):
        collect_runs([tmp_path / "missing"])
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(RwkuError, match="no stored results"):
        collect_runs([tmp_path / "empty"])
    disjoint = {"before": {"1_Ann_A": (1.0, 1.0)}, "ga-lora": {"2_Bob_B": (1.0, 1.0)}}
    with pytest.raises(RwkuError, match="no target is shared"):
        build_table1(collect_runs([make_folder(tmp_path / "disjoint", disjoint)]))


def test_a_half_written_summary_is_left_out(tmp_path):
    folder = make_folder(tmp_path / "exp")
    (folder / "ga-lora" / "4_New").mkdir()
    (folder / "ga-lora" / "4_New" / "summary.json").write_text('{"forget": ')
    runs = collect_runs([folder])
    assert "4_New" not in next(r for r in runs if r.label == "ga-lora").units


def test_report_writes_every_artefact_and_escapes_outputs(tmp_path):
    folder = make_folder(tmp_path / "exp", outputs=("</script><b>x</b>", "a writer", "far"))
    report = build_report([folder], tmp_path / "report", ReportOptions(title="Demo <report>"))
    out = tmp_path / "report"
    for name in ("index.html", "table1.md", "table1.csv", "table1.json", "table1.tex", "per_target.csv", "report.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert {"attack_types", "mia_roc", "per_target"} <= set(report.figures)
    assert "trade_off" not in report.figures and "batch_targets" not in report.figures  # no epoch, sweep or batch data
    for name in report.figures:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000 and (out / "figures" / f"{name}.svg").is_file()
    page = (out / "index.html").read_text()
    assert "Demo &lt;report&gt;" in page and page.count("<script") == 2 and "<b>x</b>" not in page.replace("<\\/", "")
    data = json.loads(page.split('type="application/json">')[1].split("</script>")[0])
    assert data["runs"] == ["before", "icu", "ga-lora", "npo-lora", "rt-lora"]
    probe = data["cases"]["1_Ann_A"][0]
    assert probe["answer"] == "Springfield" and probe["outputs"]["ga-lora"] == ["ga-lora: </script><b>x</b>", 10.0]
    rows = list(csv.DictReader(io.StringIO((out / "per_target.csv").read_text())))
    assert len(rows) == 5 * 2 and {r["target"] for r in rows} == {"1_Ann_A", "2_Bob_B"}
    manifest = json.loads((out / "report.json").read_text())
    assert "index.html" in manifest["files"] and manifest["targets"] == ["1_Ann_A", "2_Bob_B"]
    assert not list(out.rglob("*.tmp"))


def test_case_targets_limits_the_case_studies(tmp_path):
    build_report([make_folder(tmp_path / "exp")], tmp_path / "report", ReportOptions(case_targets=1))
    page = (tmp_path / "report" / "index.html").read_text()
    data = json.loads(page.split('type="application/json">')[1].split("</script>")[0])
    assert list(data["cases"]) == ["1_Ann_A"]


def test_cli_report_prints_the_table_and_fails_cleanly(tmp_path, monkeypatch, capsys, cli):
    folder = make_folder(tmp_path / "exp")
    monkeypatch.setenv("COLUMNS", "220")
    code, out, err = cli("report", str(folder), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "ga-lora" in out and "index.html" in out and "3_Cy_C" in out
    code, out, err = cli("report", str(tmp_path / "nope"), "--out", str(tmp_path / "r2"))
    assert code == 2 and "no such folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r2").exists()


def test_atomic_writes_are_readable_by_others_and_never_half_written(tmp_path, monkeypatch):
    import os

    from rwku.io import write_json_atomic, write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "index.html", "<html>")
    finally:
        os.umask(old)
    assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o644
    def disk_full(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "index.html", {"new": 1})
    assert (tmp_path / "index.html").read_text() == "<html>" and not list(tmp_path.glob(".*tmp"))


def test_variants_are_drawn_over_their_own_targets_and_kept_out_of_table1(tmp_path):
    """A RepE sweep or a layer study on fewer targets than Table 1: Table 1 keeps its targets, the figures theirs."""
    folder = make_folder(tmp_path / "exp")
    for alpha in (0.5, 2.0):
        write_unit(folder / f"repe-alpha{alpha}" / "1_Ann_A",
                   summary({"forget.All": 10 * alpha}, config("repe", sweep={"alpha": alpha}), ["Ann A"]))
    write_unit(folder / "ga-lora-layers0-2" / "1_Ann_A", summary({"forget.All": 5.0}, config("ga", layers=[0, 2]), ["Ann A"]))
    report = build_report([folder], tmp_path / "report")
    assert report.table.slugs == ["1_Ann_A", "2_Bob_B"]
    assert [run.label for run, _ in report.table.rows] == ["before", "icu", "ga-lora", "npo-lora", "rt-lora"]
    assert {"trade_off", "layer_windows"} <= set(report.figures)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "mean over the 1 target(s) these runs share" in page
    with_variants = build_report([folder], tmp_path / "report_v", ReportOptions(table_variants=True))
    assert with_variants.table.slugs == ["1_Ann_A"] and "repe-alpha0.5" in [r.label for r, _ in with_variants.table.rows]
    assert "2_Bob_B" in with_variants.table.note


def test_table_1_ranks_the_rwku_score_computed_from_stored_units(tmp_path):
    """Forget All before 60/40, neighbour 50/70, utility at 50 everywhere (ratios 1): ga-lora's targets score
    efficacy 50/60 and 20/40, locality 40/50 and 60/70, utility 1; the harmonic means ×100, then their mean."""
    table = build_table1(collect_runs([make_folder(tmp_path / "exp")]))
    cells = {run.label: dict(zip([c.path for c in table.columns], row)) for run, row in table.rows}

    def harmonic(*parts):
        return 100 * len(parts) / sum(1 / p for p in parts)

    expected = (harmonic(50 / 60, 40 / 50, 1.0) + harmonic(20 / 40, 60 / 70, 1.0)) / 2
    assert cells["ga-lora"]["rwku_score.score"].value == pytest.approx(expected)
    assert cells["before"]["rwku_score.score"].value is None and cells["before"]["rwku_score.score"].rank == 0
    assert cells["icu"]["rwku_score.score"].value == 0.0  # forgot nothing (100 after 60): no efficacy, score 0
    assert [c.label for c in COLUMNS][-1] == "RWKU" and "Score RWKU ↑" in to_markdown(table)


def test_targets_with_nothing_to_forget_are_left_out_of_the_rwku_score_and_counted(tmp_path):
    values = {"before": {"1_Ann_A": (60.0, 50.0), "2_Bob_B": (4.0, 70.0)},  # Bob: forget All before under 5
              "ga-lora": {"1_Ann_A": (30.0, 50.0), "2_Bob_B": (0.0, 70.0)}}
    table = build_table1(collect_runs([make_folder(tmp_path / "exp", values)]))
    ga = dict(zip([c.path for c in table.columns], table.rows[1][1]))
    assert ga["rwku_score.score"].value == pytest.approx(100 * 3 / (2 + 1 + 1))  # Ann only: efficacy 0.5
    assert ga["rwku_score.score"].low is None  # one target: no interval
    assert "RWKU score: 1 of 2 target(s) left out" in table.note


def test_runs_that_differ_only_in_their_seed_are_one_row_over_seeds_and_targets(tmp_path):
    folder = make_folder(tmp_path / "exp", {"before": VALUES["before"]})
    seeds = {1: {"1_Ann_A": 10.0, "2_Bob_B": 20.0, "3_Cy_C": 30.0}, 2: {"1_Ann_A": 14.0, "2_Bob_B": 24.0}}
    for seed, per_target in seeds.items():
        for slug, forget in per_target.items():
            unit = summary({"forget.All": forget}, config("ga", sweep={"seed": seed}), [TARGETS[slug]])
            write_unit(folder / f"ga-lora-seed{seed}" / slug, unit, items(TARGETS[slug], ["x", "y", "z"], [0, 0, 0], fm=[-1.0], rm=[-1.0]))
    table = build_table1(collect_runs([folder]))
    assert [run.label for run, _ in table.rows] == ["before", "ga-lora (2 seeds)"]
    forget = dict(zip([c.path for c in table.columns], table.rows[1][1]))["forget.All"]
    assert table.slugs == ["1_Ann_A", "2_Bob_B"]  # the targets every seed has
    assert forget.value == pytest.approx((10 + 20 + 14 + 24) / 4)  # over seeds × targets
    assert forget.low is not None and forget.low < forget.value < forget.high


def planted_folder(root: Path) -> Path:
    """Before and GA on a planted model: Ann and Bob planted, Cy the control (each unit summary records its role),
    with GA's corpus coverage on the planted targets."""
    roles = {"1_Ann_A": "planted", "2_Bob_B": "planted", "3_Cy_C": "control"}
    values = {"before": {"1_Ann_A": (80.0, 60.0), "2_Bob_B": (70.0, 50.0), "3_Cy_C": (6.0, 40.0)},
              "ga-lora": {"1_Ann_A": (20.0, 40.0), "2_Bob_B": (30.0, 30.0), "3_Cy_C": (8.0, 38.0)}}
    for run, per_target in values.items():
        for slug, (forget, neighbor) in per_target.items():
            extra = {"role": roles[slug]}
            if run != "before":
                extra["coverage"] = {"percent": {"1_Ann_A": 90.0, "2_Bob_B": 60.0, "3_Cy_C": 10.0}[slug], "found": 1, "answers": 2}
            unit = summary({"forget.All": forget, "neighbor.All": neighbor}, config(run.split("-")[0]), [TARGETS[slug]], **extra)
            write_unit(root / run / slug, unit, items(TARGETS[slug], ["a", "b", "c"], [forget, forget, neighbor], [-1.0], [-2.0]))
    return root


def test_planted_targets_and_the_control_are_reported_apart(tmp_path, cli, monkeypatch):
    from rwku.report.table import COVERAGE_COLUMN

    folder = planted_folder(tmp_path / "exp")
    report = build_report([folder], tmp_path / "report")
    table, (control,) = report.table, report.role_tables
    assert table.role == "planted" and table.slugs == ["1_Ann_A", "2_Bob_B"] and not table.note
    assert control.role == "control" and control.slugs == ["3_Cy_C"]
    cells = {run.label: dict(zip([c.path for c in COLUMNS], row)) for run, row in table.rows}
    assert cells["before"]["forget.All"].value == 75.0 and cells["ga-lora"]["forget.All"].value == 25.0
    assert cells["ga-lora"][COVERAGE_COLUMN.path].value == 75.0 and cells["ga-lora"][COVERAGE_COLUMN.path].rank == 0
    assert cells["before"][COVERAGE_COLUMN.path].text == "-"
    control_cells = {run.label: dict(zip([c.path for c in COLUMNS], row)) for run, row in control.rows}
    assert control_cells["ga-lora"]["forget.All"].value == 8.0
    paths = [c.path for c in COLUMNS]
    assert paths.index(COVERAGE_COLUMN.path) == paths.index("forget.All") + 1  # beside forget All
    out = tmp_path / "report"
    markdown = (out / "table1.md").read_text()
    assert "over 2 planted target(s): 1_Ann_A, 2_Bob_B" in markdown and "## Control target(s)" in markdown
    assert "over 1 control target(s): 3_Cy_C" in markdown and "Forget Cov. ↑" in markdown
    stored = json.loads((out / "table1.json").read_text())
    assert stored["role"] == "planted" and stored["control"]["targets"] == ["3_Cy_C"]
    assert (out / "table1-control.csv").is_file() and (out / "table1-control.tex").is_file()
    page = (out / "index.html").read_text()
    assert "Table 1 · mean over 2 planted target(s)" in page and 'id="table1-control-table"' in page
    monkeypatch.setenv("COLUMNS", "220")
    code, printed, err = cli("report", str(folder), "--out", str(tmp_path / "r2"))
    assert code == 0, err
    assert "mean over 2 planted target(s)" in printed and "mean over 1 control target(s)" in printed


def test_a_model_without_roles_keeps_one_table(tmp_path):
    report = build_report([make_folder(tmp_path / "exp")], tmp_path / "report")
    assert report.table.role == "" and report.role_tables == []
    assert "## Control" not in (tmp_path / "report" / "table1.md").read_text()


def test_the_printed_report_table_puts_every_cell_under_its_own_heading(monkeypatch):
    """`rwku report` prints the table's own columns (a run without verbmem has no VerbMem column; a planted model's
    table adds the reference columns), not the full column list: otherwise cells slide under other headings."""
    from types import SimpleNamespace

    import rwku.cli as cli

    printed = []
    monkeypatch.setattr(cli, "Console", lambda **_: SimpleNamespace(print=printed.append))
    cell = lambda text, rank=None: SimpleNamespace(text=text, rank=rank)  # noqa: E731
    shown = SimpleNamespace(targets_text="1 target(s)", note=None, columns=(COLUMNS[3], COLUMNS[-1]),
                            rows=[(SimpleNamespace(label="ga-lora"), [cell("51.5", 1), cell("40.6")])])
    cli.print_report_table(shown)
    table = printed[0]
    assert [c.header.split("\n")[-1] for c in table.columns] == ["run", f"{COLUMNS[3].label}↓", f"{COLUMNS[-1].label}↑"]
    assert [list(c.cells) for c in table.columns][1:] == [["[bold]51.5[/]"], ["40.6"]]
