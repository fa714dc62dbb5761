"""The report's Audits table (md/csv/json/tex), its figure and the audits in the case-study view, from hand-made
stored audits with known numbers."""

from __future__ import annotations

import json

from report_fixtures import make_folder

from rwku.report.audits import build_audit_table, to_csv, to_json, to_latex, to_markdown
from rwku.report.build import build_report
from rwku.report.collect import collect_runs
from rwku.io import write_json_atomic

#: run -> audit -> per target (attack, unlearned, original, neighbour attack)
AUDITED = {
    "ga-lora": {"quant4": {"1_Ann_A": (30.0, 10.0, 50.0, 40.0), "2_Bob_B": (20.0, 10.0, 30.0, 60.0)},
                "suffix": {"1_Ann_A": (12.0, 10.0, 12.0, 40.0), "2_Bob_B": (10.0, 10.0, 14.0, 60.0)}},
    "rt-lora": {"quant4": {"1_Ann_A": (10.0, 10.0, 50.0, 20.0), "2_Bob_B": (10.0, 10.0, 30.0, 30.0)}},
}


def write_audits(root, audited=AUDITED):
    for run, by_audit in audited.items():
        for name, per_target in by_audit.items():
            for slug, (attack, unlearned, original, neighbor) in per_target.items():
                folder = root / run / slug / "audits" / name
                write_json_atomic(folder / "items.json", {"forget": [
                    {"level": "FB", "type": "cloze", "query": f"{slug.split('_', 1)[1].replace('_', ' ')} was born in ___.",
                     "reference": "Springfield", "output": f"{name} says Springfield", "score": 1.0, "suffix": "zq zq" if name == "suffix" else None}]})
                write_json_atomic(folder / "summary.json", {"audit": name, "forget": {"attack": attack, "unlearned": unlearned,
                                                                                       "original": original},
                                                            "neighbor": {"attack": neighbor},
                                                            **({"note": "a note"} if run == "rt-lora" else {})})
    return root


def test_audit_table_means_and_recovered_percent_from_the_means(tmp_path):
    runs = collect_runs([write_audits(make_folder(tmp_path / "exp"))])
    table = build_audit_table(runs)
    assert table.audits == ["quant4", "suffix"] and table.slugs == ["1_Ann_A", "2_Bob_B"]
    rows = {run.label: cells for run, cells in table.rows}
    assert set(rows) == {"ga-lora", "rt-lora"}  # runs without audits (icu, npo) are no rows
    ga = rows["ga-lora"]["quant4"]
    assert (ga.attack, ga.unlearned, ga.original, ga.neighbor) == (25.0, 10.0, 40.0, 50.0)
    assert ga.recovered == 50.0 and ga.text == "25.0 (50%)"
    assert rows["ga-lora"]["suffix"].recovered is None and rows["ga-lora"]["suffix"].text == "11.0 (n/a)"  # gap 3 < 5
    assert rows["rt-lora"]["quant4"].text == "10.0 (0%)" and rows["rt-lora"]["suffix"].text == "-"
    markdown = to_markdown(table)
    assert "| ga-lora | 25.0 (50%) | 11.0 (n/a) |" in markdown and "rt-lora · quant4: a note" in markdown
    assert "ga-lora,quant4,2,25.0,10.0,40.0,50.0,50.0" in to_csv(table)
    assert to_json(table)["rows"][0]["audits"]["quant4"]["recovered_percent"] == 50.0
    assert r"ga-lora & 25.0 (50\%) & 11.0 (n/a) \\" in to_latex(table)


def test_report_writes_the_audits_table_figure_and_case_study_columns(tmp_path):
    folder = write_audits(make_folder(tmp_path / "exp"))
    out = tmp_path / "report"
    report = build_report([folder], out)
    for name in ("audits.md", "audits.csv", "audits.json", "audits.tex", "figures/audits.png", "figures/audits.svg"):
        assert (out / name).is_file(), name
    assert "audits" in report.figures
    page = (out / "index.html").read_text()
    assert 'id="audits-table"' in page and 'href="#audits"' in page
    cases = json.loads(page.split('<script id="case-data" type="application/json">')[1].split("</script>")[0])
    assert "ga-lora · quant4" in cases["runs"] and "ga-lora · suffix" in cases["runs"] and "icu · quant4" not in cases["runs"]
    probe = next(p for p in cases["cases"]["1_Ann_A"] if p["query"] == "Ann A was born in ___.")
    assert probe["outputs"]["ga-lora · quant4"] == ["quant4 says Springfield", 1.0]
    assert probe["outputs"]["ga-lora · suffix"][0] == "suffix says Springfield  ⟨suffix: zq zq⟩"


def test_a_report_without_audits_has_no_audits_section(tmp_path):
    out = tmp_path / "report"
    build_report([make_folder(tmp_path / "exp")], out)
    assert not (out / "audits.md").exists() and 'id="audits-table"' not in (out / "index.html").read_text()
