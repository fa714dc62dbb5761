"""The settings ``rwku unlearn`` prints before it runs: one table of the values that differ from the defaults (a
row per run, each changed value marked with its source's footnote), every value with its source behind
``--show-settings``."""

from __future__ import annotations

from rwku.methods import METHODS
from rwku.methods.config import Footnotes, resolve_settings, settings_table
from rwku.methods.config import CALIBRATED


def small_runs(**overrides):
    """RepE, GA and RMU with LoRA under the small preset, as ``rwku unlearn --preset small`` resolves them."""
    return {name: resolve_settings(METHODS[method], "lora", "single", "small", overrides)
            for name, method in (("repe", "repe"), ("ga-lora", "ga"), ("rmu-lora", "rmu"))}


def test_footnotes_number_each_source_once_in_order_of_use():
    notes = Footnotes()
    assert [notes.mark("a"), notes.mark("b"), notes.mark("a")] + [notes.mark(str(n)) for n in range(9)][-1:] == ["¹", "²", "¹", "¹¹"]
    assert notes.lines()[:2] == ["¹ a", "² b"]


def test_a_column_per_changed_value_training_first_and_a_dash_where_a_method_lacks_the_key():
    notes = Footnotes()
    table = settings_table(small_runs(epochs="2"), notes)
    columns = list(table.columns)
    # grad_accum and seed keep their defaults in every run: no column; epochs is changed by --set
    assert "grad_accum" not in columns and "seed" not in columns and "epochs" in columns
    assert columns.index("lr") < columns.index("corpus_size") < columns.index("alpha") < columns.index("steering_coeff")
    rows = {run: dict(zip(columns, cells)) for run, cells in table.rows}
    assert rows["repe"]["lr"] == "-" and rows["repe"]["alpha"] == "0.25¹"
    assert rows["ga-lora"]["alpha"] == "-" and rows["ga-lora"]["epochs"] == "2²"
    assert rows["rmu-lora"]["lr"] == "0.03³" and rows["rmu-lora"]["alpha"] == "10.0³"
    assert notes.sources[0] == CALIBRATED and notes.sources[1] == "--set" and notes.sources[2].startswith(CALIBRATED)


def test_a_value_a_run_keeps_at_its_default_is_shown_unmarked_when_another_run_changes_it():
    notes = Footnotes()
    runs = {"ga-lora": resolve_settings(METHODS["ga"], "lora", "single", "none"),
            "npo-lora": resolve_settings(METHODS["npo"], "lora", "single", "none", {"lr": "2e-5"})}
    table = settings_table(runs, notes)
    assert table.columns == ("lr",)
    assert dict(table.rows) == {"ga-lora": ("1e-05",), "npo-lora": ("2e-05¹",)} and notes.lines() == ["¹ --set"]


def test_unlearn_prints_one_table_and_the_sources_below_it(tiny_model_dir, tmp_path, cli):
    args = ("unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--method", "icu,npo", "--preset", "small",
            "--set", "epochs=1", "--dry-run", "--out", str(tmp_path / "o"))
    code, out, err = cli(*args)
    assert code == 0, err
    lines = [" ".join(line.split()) for line in out.splitlines()]
    header = next(line for line in lines if line.startswith("┃ run"))
    assert header.split(" ┃ ")[1:4] == ["lr", "batch_size", "epochs"]
    assert any(line.startswith("│ icu │ - │ - │ - │") for line in lines)
    assert any(line.startswith("│ npo-lora │ 0.003¹ │ 4¹ │ 1² │") for line in lines)
    assert f"¹ {CALIBRATED}" in lines and "² --set" in lines
    # no value's source is written beside it: the paragraphs per method are gone
    assert "(--set)" not in out and out.count(CALIBRATED) == 1


def test_show_settings_lists_every_value_with_its_source(tiny_model_dir, tmp_path, cli):
    code, out, err = cli("unlearn", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--method", "npo", "--preset", "small",
                         "--audit", "quant4", "--show-settings", "--dry-run", "--out", str(tmp_path / "o"))
    assert code == 0, err
    text = " ".join(out.split())
    assert "npo-lora │ seed │ 42 │ paper, appendix H" in text and "npo-lora │ beta │ 0.2 │ paper, §4.2 (β = 0.2)" in text
    assert "audits quant4 │ group_size │ 128 │" in text
