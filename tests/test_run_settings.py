"""One settings type for how a model runs and is evaluated (``RunSettings``, embedded in every job as ``job.run``):
the unit keys it declares are byte for byte those stored before it existed, every evaluation context made from it
keeps the protocol's fixes, and the command line's options take their defaults from it."""

from __future__ import annotations

import json

import pytest

import rwku.execution.plan as plan_module
from rwku.data import RwkuData
from rwku.data.loader import data_fingerprint
from rwku.evaluation import Protocol
from rwku.evaluation.sets import parse_sets, parts_of
from rwku.evaluation.settings import RunSettings
from rwku.methods.config import ModeConfig
from rwku.models.fingerprint import model_fingerprint
from rwku.runner import EvalJob
from rwku.saved_audit import AuditJob
from rwku.unlearn import UnlearnJob

VERBMEM = {"prompt_tokens": 32, "new_tokens": 128, "min_words": 100, "rouge": "rougeL, rouge_score tokens"}
NPO_SMALL = {
    "name": "npo", "setting": "single",
    "train": {"lr": 0.003, "batch_size": 4, "grad_accum": 1, "epochs": 3, "warmup_steps": 0, "weight_decay": 0.0,
              "max_grad_norm": 1.0, "max_length": 256, "seed": 42, "precision": "auto", "gradient_checkpointing": "auto",
              "optimizer": "adamw"},
    "corpus": {"source": "generated", "corpus_size": 8, "question_count": 8, "corpus_max_new_tokens": 96},
    "params": {"beta": 0.2},
    "mode": {"mode": "lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_targets": ["q_proj", "v_proj"],
             "train_layers": None},
}


@pytest.fixture
def demo():
    return RwkuData.open(["demo"])


def key_of(job, name):
    return next(task.key for task in job.tasks() if task.name == name)


def unit_data(data, names, sets):
    return data_fingerprint(data, data.select(names), parts_of(sets))


def same_bytes(key, expected):
    """Compared as the JSON a summary stores, in order: a reordered key would be a new file."""
    assert json.dumps(key) == json.dumps(expected)


def test_an_evaluation_key_is_the_one_stored_before(demo):
    sets = parse_sets("all,verbmem")
    run = RunSettings(model="smollm2-135m", sets=sets, limit=3, protocol=Protocol.from_names(["single-bos", "stop-newline"]),
                      prompt_format="plain", device="cpu", kernels="fast", batch_size=8)
    same_bytes(key_of(EvalJob(run=run, data=demo, targets=demo.select("1-2")), "1_Isaac_Newton"), {
        "version": 3, "model": {"spec": "smollm2-135m", "fingerprint": model_fingerprint("smollm2-135m")},
        "unit": {"targets": ["Isaac Newton"], "data": unit_data(demo, "1", sets)},
        "eval": {"sets": ["forget", "neighbor", "mia", "utility", "verbmem"], "limit": 3, "protocol": ["single-bos", "stop-newline"],
                 "prompt_format": "plain", "preamble": None, "device": "cpu", "dtype": "float32", "kernels": "fast",
                 "batch_size": 8, "set_settings": {"verbmem": VERBMEM}}})


def test_a_served_models_key_is_the_one_stored_before(demo, monkeypatch):
    monkeypatch.setattr(plan_module, "served_identity", lambda spec: {"id": spec.split(":", 1)[1], "owned_by": "test"})
    run = RunSettings(model="openai:x", tokenizer="smollm2-135m", sets=("forget",))
    same_bytes(key_of(EvalJob(run=run, data=demo, targets=demo.select("1")), "1_Isaac_Newton"), {
        "version": 3, "model": {"spec": "openai:x", "server": {"id": "x", "owned_by": "test"},
                                "tokenizer": {"spec": "smollm2-135m", "fingerprint": model_fingerprint("smollm2-135m")}},
        "unit": {"targets": ["Isaac Newton"], "data": unit_data(demo, "1", ("forget",))},
        "eval": {"sets": ["forget"], "limit": None, "protocol": [], "prompt_format": "chat", "preamble": None,
                 "device": "server", "dtype": "server", "kernels": "invariant"}})


def test_an_unlearning_key_is_the_one_stored_before(demo):
    job = UnlearnJob(run=RunSettings(device="cpu"), data=demo, targets=demo.select("1"), methods=["ga", "npo"],
                     mode=ModeConfig(mode="lora"), preset="small")
    sets = ("forget", "neighbor", "mia", "utility")
    same_bytes(key_of(job, "npo-lora/1_Isaac_Newton"), {
        "version": 3, "model": {"spec": "smollm2-135m", "fingerprint": model_fingerprint("smollm2-135m")},
        "unit": {"targets": ["Isaac Newton"], "data": unit_data(demo, "1", sets)},
        "eval": {"sets": list(sets), "limit": None, "protocol": [], "prompt_format": "chat", "preamble": None, "device": "cpu",
                 "dtype": "float32", "kernels": "invariant"},
        "method": NPO_SMALL})


def test_an_audit_key_is_the_one_stored_before(demo, tmp_path):
    saved = tmp_path / "model"
    saved.mkdir()
    (saved / "weights.bin").write_bytes(b"x" * 100)
    run = RunSettings(model=str(saved), sets=("forget", "neighbor"), limit=2, device="cpu")
    job = AuditJob(run=run, original="smollm2-135m", data=demo, targets=demo.select("1-2"), audits=["quant8", "relearn"])
    same_bytes(key_of(job, "1_Isaac_Newton"), {
        "version": 3, "model": {"spec": str(saved), "fingerprint": model_fingerprint(str(saved))},
        "unit": {"targets": ["Isaac Newton"], "data": unit_data(demo, "1", ("forget", "neighbor")),
                 "audits": {"data": unit_data(demo, "1-2", ("forget", "neighbor")), "control": "Marie Curie"}},
        "eval": {"sets": ["forget", "neighbor"], "limit": 2, "protocol": [], "prompt_format": "chat", "preamble": None,
                 "device": "cpu", "dtype": "float32", "kernels": "invariant"},
        "original": {"spec": "smollm2-135m", "fingerprint": model_fingerprint("smollm2-135m")},
        "audits": {"names": ["quant8", "relearn"],
                   "settings": {"group_size": 128, "quant_backend": "torch", "relearn_lr": 0.003, "relearn_mode": "lora",
                                "relearn_seed": 0, "relearn_steps": 4}}})


def test_every_context_keeps_the_runs_prompts_protocol_and_batch(tiny_lm):
    run = RunSettings(protocol=Protocol.from_names(["single-bos"]), prompt_format="plain", batch_size=5)
    ctx = run.context(tiny_lm, model=tiny_lm.model, preamble="forget X.")
    assert ctx.prompts.single_bos and ctx.prompts.style == "plain" and ctx.prompts.preamble == "forget X."
    assert ctx.protocol == run.protocol and ctx.batch_size == 5 and ctx.lm.tokenizer is tiny_lm.tokenizer


def option_defaults(command: str) -> dict[str, object]:
    import typer

    from rwku.cli import app

    params = typer.main.get_command(app).commands[command].params
    return {param.opts[0]: param.default for param in params if param.opts}


@pytest.mark.parametrize("command", ["eval", "unlearn", "audit", "memorization"])
def test_the_commands_take_their_run_defaults_from_the_settings_type(command):
    defaults, settings = option_defaults(command), RunSettings()
    for option, field in (("--batch-size", "batch_size"), ("--device", "device"), ("--dtype", "dtype"),
                          ("--kernels", "kernels"), ("--limit", "limit"), ("--prompt-format", "prompt_format")):
        if option in defaults:
            assert defaults[option] == getattr(settings, field), option
    if "--sets" in defaults:
        assert parse_sets(defaults["--sets"]) == settings.sets
    assert defaults["--targets"] == "all"  # one default everywhere: the whole benchmark
