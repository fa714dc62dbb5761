"""The ``rwku`` command: a run on a tiny model, resume, and one clear line for every kind of bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from rwku.cli import main
from rwku.data.sources import DEMO_ROOT


def eval_args(model: Path | str, data: Path | str, out: Path, *extra: str) -> list[str]:
    return ["eval", "--model", str(model), "--data", str(data), "--targets", "1", "--out", str(out),
            "--limit", "2", "--threads", "1", "--device", "cpu", *extra]


def demo_copy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(DEMO_ROOT, root)
    return root


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    text = " ".join(err.split())  # rich may wrap long lines
    for fragment in fragments:
        assert fragment in text, (fragment, err)


def test_eval_writes_items_and_summary_then_resumes(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    out = tmp_path / "run"
    code, stdout, _ = cli(*eval_args(tiny_model_dir, "demo", out))
    assert code == 0
    summary = json.loads((out / "1_Isaac_Newton" / "summary.json").read_text())
    items = json.loads((out / "1_Isaac_Newton" / "items.json").read_text())
    assert summary["target"] == "Isaac Newton" and summary["model"] == str(tiny_model_dir)
    assert set(summary["n_items"]) == {"forget", "neighbor", "mia", "mmlu", "bbh", "truthful", "triviaqa", "fluency"}
    assert summary["rwku_version"] and summary["protocol"] == "faithful"
    assert len(items["forget"]) == summary["n_items"]["forget"] == 6  # 2 per level
    assert json.loads((out / "summary.json").read_text())["n_targets"] == 1
    assert "Isaac Newton" in stdout and "Forget" in stdout
    assert "stored result of an earlier run" not in stdout  # the legend only under a row marked *
    stamp = (out / "1_Isaac_Newton" / "summary.json").stat().st_mtime_ns
    code, stdout, _ = cli(*eval_args(tiny_model_dir, "demo", out))
    assert code == 0 and "Isaac Newton*" in stdout and "* stored result of an earlier run" in stdout
    assert (out / "1_Isaac_Newton" / "summary.json").stat().st_mtime_ns == stamp
    code, _, _ = cli(*eval_args(tiny_model_dir, "demo", out, "--sets", "forget"))
    assert code == 0  # another config: recomputed, not reused
    assert json.loads((out / "1_Isaac_Newton" / "summary.json").read_text())["config"]["sets"] == ["forget"]


def test_missing_data_folder(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    out = tmp_path / "run"
    code, _, err = cli(*eval_args(tiny_model_dir, tmp_path / "nowhere", out))
    assert_one_line_error(code, err, "nowhere", "no such file or folder")
    assert not out.exists()


def test_malformed_data_file(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    root = demo_copy(tmp_path)
    broken = root / "1_Isaac_Newton" / "forget_level2.json"
    broken.write_text('[{"query": "x", ', encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = cli(*eval_args(tiny_model_dir, root, out))
    assert_one_line_error(code, err, "forget_level2.json", "not valid JSON")
    assert not (out / "1_Isaac_Newton" / "summary.json").exists()


def test_record_missing_a_field(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    root = demo_copy(tmp_path)
    path = root / "1_Isaac_Newton" / "forget_level1.json"
    records = json.loads(path.read_text())
    del records[1]["answer"]
    path.write_text(json.dumps(records))
    code, _, err = cli(*eval_args(tiny_model_dir, root, tmp_path / "run"))
    assert_one_line_error(code, err, "forget_level1.json record 1", "answer")


def test_unknown_target(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    args = eval_args(tiny_model_dir, "demo", tmp_path / "run")
    args[args.index("--targets") + 1] = "9"
    code, _, err = cli(*args)
    assert_one_line_error(code, err, "target 9 is not in")
    args[args.index("--targets") + 1] = "Nobody Known"
    code, _, err = cli(*args)
    assert_one_line_error(code, err, "no target named 'Nobody Known'")


def test_missing_model_path(tmp_path, monkeypatch, capsys, cli):
    out = tmp_path / "run"
    code, _, err = cli(*eval_args(tmp_path / "no-model", "demo", out))
    assert_one_line_error(code, err, "no-model", "no such file or folder")
    assert not out.exists()


def test_model_without_chat_template(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    plain = tmp_path / "plain-model"
    shutil.copytree(tiny_model_dir, plain)
    for name in ("chat_template.jinja", "chat_template.json"):
        (plain / name).unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    code, _, err = cli(*eval_args(plain, "demo", out))
    assert_one_line_error(code, err, "no chat template", "--prompt-format plain")
    assert not out.exists()
    code, _, _ = cli(*eval_args(plain, "demo", out, "--prompt-format", "plain", "--sets", "forget"))
    assert code == 0


def test_unknown_fix_and_set(tiny_model_dir, tmp_path, monkeypatch, capsys, cli):
    code, _, err = cli(*eval_args(tiny_model_dir, "demo", tmp_path / "r", "--fix", "nope"))
    assert_one_line_error(code, err, "--fix nope", "bbh-whole-answer")
    code, _, err = cli(*eval_args(tiny_model_dir, "demo", tmp_path / "r", "--sets", "forget,bogus"))
    assert_one_line_error(code, err, "unknown set bogus")


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from rwku.errors import RwkuError

    monkeypatch.setattr(sys, "argv", ["rwku", "--debug", *eval_args(tmp_path / "no-model", "demo", tmp_path / "r")])
    with pytest.raises(RwkuError):
        main()


def test_data_info_counts_the_demo(monkeypatch, capsys, cli):
    code, stdout, _ = cli("data", "info", "--data", "demo")
    assert code == 0
    assert "3 target(s)" in stdout
    assert "forget.FB" in stdout and "forget.AA.cross lingual" in stdout and "mmlu" in stdout
