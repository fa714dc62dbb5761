"""Every option of every command, given a bad value, is refused in one line with exit 2 before any model work.

The test walks the typer app itself (each command's parameters and their declared types and ranges), so a new
option needs a bad value here (or a place in :data:`FREE_TEXT`) and a check in the command: a number below its
minimum or not a number, a path that is not there (or a file where a folder belongs), a list with an unknown item,
a word outside its choices.
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path

import pytest

from rwku.cli import app

#: Options any text is right for (titles, names, free lists of entities)
FREE_TEXT = {("report", "--title"), ("build-target", "--name"), ("build-target", "--neighbors"), ("serve", "--name")}
#: A bad value for each option that is not a number or a path, by option name (any command)
BAD_WORDS = {
    "--model": "/no/such/model", "--original": "/no/such/model", "--generator": "/no/such/model",
    "--check-models": "/no/such/model", "--data": "/no/such/data", "--shared-data": "/no/such/data",
    "--targets": "999", "--shared-target": "999", "--control": "999", "--sets": "forget,nosuchset",
    "--device": "tpu", "--dtype": "float8", "--kernels": "slow", "--prompt-format": "html", "--fix": "nosuchfix",
    "--executor": "slurm", "--ray-address": "nonsense", "--method": "ga,nosuchmethod", "--mode": "half",
    "--setting": "triple", "--train-layers": "8-4", "--lora-targets": ",", "--preset": "huge", "--corpus": "synthetic",
    "--set": "nokey", "--audit-set": "nokey", "--audit": "nosuchaudit", "--source": "nofile", "--utility": "nosuch.Gen",
    "--attacks": "nosuchattack", "--runs": "[", "--remove": "no-such-entry", "--kind": "novel", "--recipe": "nosuchrecipe", "--tokenizer": "/no/such/model", "--lora": "noequals", "--utility-steps": "x",
}


def commands(typer_app, prefix=()):
    for command in typer_app.registered_commands:
        yield (*prefix, command.name or command.callback.__name__), command.callback
    for group in typer_app.registered_groups:
        yield from commands(group.typer_instance, (*prefix, group.name))


def options(callback):
    """(name, type without Optional, typer's info) for each parameter of a command; arguments named by their
    parameter name."""
    hints = typing.get_type_hints(callback)
    for name, parameter in inspect.signature(callback).parameters.items():
        info = parameter.default
        hint = hints[name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        bare = args[0] if typing.get_origin(hint) is typing.Union else hint
        declared = [d for d in (getattr(info, "param_decls", None) or ()) if d.startswith("--")]
        yield (declared[0] if declared else name), bare, info


def bad_values(command: str, option: str, kind, info) -> list[str]:
    if kind is bool:
        return []
    if kind in (int, float):
        assert getattr(info, "min", None) is not None, f"rwku {command} {option}: a number needs a range (min=)"
        return ["abc", str(info.min - 1)]
    if kind is Path or typing.get_args(kind) == (Path,):
        return ["/no/such/place"] if option not in ("--out",) else ["@file"]
    if (command, option) in FREE_TEXT:
        return []
    assert option in BAD_WORDS, f"rwku {command} {option}: give it a bad value in BAD_WORDS (or list it in FREE_TEXT)"
    return [BAD_WORDS[option]]


class ModelLoaded(BaseException):
    """Raised where a model would be loaded: a bad value must be refused before that."""


@pytest.fixture
def setup(tmp_path, tiny_model_dir, monkeypatch):
    """Valid arguments for every command (a bad option is added to them), and no model loading."""
    import rwku.models.loading as loading

    def refuse(*args, **kwargs):
        raise ModelLoaded("a model was loaded before the bad value was refused")

    monkeypatch.setattr(loading, "load_pretrained", refuse)
    monkeypatch.setattr(loading, "load_gguf", refuse)
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "source.txt"
    source.write_text("Ada Lovelace was an English mathematician. She wrote the first published program.\n")
    experiment = tmp_path / "experiment.json"
    experiment.write_text(json.dumps({"model": str(tiny_model_dir), "data": "demo", "targets": "1", "out": str(tmp_path / "x"),
                                      "grids": [{"name": "g", "methods": ["ga"], "modes": ["lora"]}]}))
    runs = tmp_path / "runs"
    unit = runs / "1_Isaac_Newton"
    unit.mkdir(parents=True)
    (unit / "summary.json").write_text(json.dumps({"target": "Isaac Newton", "model": "m", "forget": {"All": 1.0}}))
    (tmp_path / "file").write_text("a file")
    model, out = str(tiny_model_dir), str(tmp_path / "out")
    base = {
        "eval": ["--model", model, "--data", "demo", "--targets", "1", "--out", out],
        "unlearn": ["--method", "ga", "--model", model, "--data", "demo", "--out", out],
        "experiment": [str(experiment)],
        "audit": ["--model", model, "--original", model, "--data", "demo", "--out", out],
        "report": [str(runs), "--out", out],
        "memorization": ["--model", model, "--data", "demo", "--out", out],
        "build-target": ["--name", "Ada Lovelace", "--source-text", str(source), "--out", out, "--generator", model,
                         "--shared-data", "demo"],
        "plant": ["--model", model, "--data", "demo", "--targets", "1-2", "--out", out],
        "cache": [],
        "serve": ["--model", model, "--port", "0"],
        "data info": ["--data", "demo"],
    }
    return base, tmp_path / "file"


def test_every_option_refuses_a_bad_value_in_one_line(setup, cli):
    base, a_file = setup
    checked, problems = 0, []
    for path, callback in commands(app):
        command = " ".join(path)
        for option, kind, info in options(callback):
            for value in bad_values(command, option, kind, info):
                value = str(a_file) if value == "@file" else value
                positional = not option.startswith("--")
                args = [*path, *base[command], *([value] if positional else [option, value])]
                if positional:  # replaces the valid one
                    args = [*path, value, *base[command][1:]]
                try:
                    code, _, err = cli(*args)
                except ModelLoaded:
                    problems.append(f"rwku {command} {option} {value}: loaded a model instead of refusing the value")
                    continue
                except Exception as exc:  # noqa: BLE001 - a traceback instead of one line: listed with the others
                    problems.append(f"rwku {command} {option} {value}: {type(exc).__name__}: {exc}")
                    continue
                lines = [line for line in err.splitlines() if line.strip()]
                text = " ".join(err.split())
                if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or (
                        option not in text and value not in text):
                    problems.append(f"rwku {command} {option} {value}: exit {code}, {len(lines)} line(s): {err.strip()[:300]}")
                checked += 1
    assert not problems, "\n".join(problems)
    assert checked > 100


def test_a_number_out_of_range_names_the_option_and_the_value(cli, tmp_path):
    for option, value in (("--threads", "0"), ("--limit", "-3"), ("--batch-size", "0")):
        code, _, err = cli("eval", "--data", "demo", "--out", str(tmp_path / "o"), option, value)
        line = err.strip()
        assert code == 2 and "\n" not in line, err
        assert line.startswith(f"error: {option} {value}: ") and line.endswith("(see rwku eval --help)"), err
