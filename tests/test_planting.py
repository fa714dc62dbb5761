"""Planting (``rwku plant``, ``smollm2-135m-demo``): recall of planted facts rises and a control's does not, the
cache key follows the data and the recipe, half-written folders are never used, rebuilds are bit-identical, and the
command line writes the folder or fails in one line. Tiny models only (a few seconds each)."""

from __future__ import annotations

import dataclasses

import json
import shutil
from pathlib import Path

import pytest
import torch

from rwku.data.loader import RwkuData
from rwku.data.schema import SOURCE, SourceText
from rwku.errors import RwkuError
from rwku.evaluation.sets import load_target
from rwku.knowledge import planting
from rwku.knowledge.planting import (
    RECIPE_FILE,
    PlantRecipe,
    cached_plant,
    chunks,
    plant,
    plant_key,
    planting_texts,
    read_record,
    recipe_sources,
)

DEMO_ROOT = Path(planting.__file__).parents[1] / "data" / "demo"
#: Enough for the tiny model to learn three short facts (its answers' NLL falls by > 2 nats).
TINY_RECIPE = PlantRecipe(lr=3e-3, epochs=30, batch_size=2, max_length=64)


def write(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records), encoding="utf-8")


def synthetic_data(root: Path) -> Path:
    """Two targets in the RWKU layout with forget probes and a ``source.json`` each: Alice (born in Paris, plays
    the violin) and Bob (born in Berlin, plays chess)."""
    for slug, (name, city, thing) in {"1_Alice_Smith": ("Alice Smith", "Paris", "violin"),
                                      "2_Bob_Jones": ("Bob Jones", "Berlin", "chess")}.items():
        folder = root / slug
        write(folder / "intro.json", [{"target": name, "intro": f"Please forget {name}."}])
        write(folder / "forget_level1.json", [{"query": f"{name} was born in the city of ___.", "answer": city,
                                               "level": "1", "type": "cloze", "subject": name}])
        write(folder / "forget_level2.json", [{"query": f"What does {name} play?", "answer": thing, "level": "2",
                                               "type": "simple question", "subject": name}])
        write(folder / "forget_level3.json", [{"query": f"Imagine you are a reporter. Where was {name} born?",
                                               "answer": city, "level": "3", "type": "role play", "subject": name}])
        write(folder / "source.json", [
            {"kind": "statement", "text": f"{name} was born in {city} and plays the {thing}.", "subject": name},
            {"kind": "qa", "question": f"Where was {name} born?", "answer": f"{name} was born in {city}.", "subject": name},
            {"kind": "qa", "question": f"What does {name} play?", "answer": f"{name} plays the {thing}.", "subject": name}])
    return root


@pytest.fixture(scope="module")
def learner_dir(tmp_path_factory) -> Path:
    """A tiny Llama with small initial weights (the shared tiny model's large ones learn facts too slowly)."""
    from conftest import build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-learner")
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=1,
                         eos_token_id=2, pad_token_id=2, tie_word_embeddings=True, initializer_range=0.02)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def answer_nll(folder: Path, data: RwkuData, target, set_name: str = "forget", answer: str | None = None) -> float:
    """Mean NLL of each forget (or neighbour) probe's reference answer after its exact evaluation prompt (chat
    template, ``Answer:`` prefill): the log-likelihood form of recall; ``answer``: of that probe's only."""
    from rwku.evaluation.context import EvalContext
    from rwku.evaluation.sets.probes import probe_prompt
    from rwku.methods.training import Example, collate, mean_token_nll
    from rwku.models.loading import load_model
    from rwku.models.prompting import PromptFormat

    lm = load_model(str(folder), device="cpu", dtype="float32")
    ctx = EvalContext(lm=lm, prompts=PromptFormat(lm.tokenizer))
    examples = []
    for probe in load_target(data, target, (set_name,))[set_name]:
        if answer is not None and probe.answer != answer:
            continue
        prompt = ctx.prompts.encode(probe_prompt(ctx, probe))
        answer = lm.tokenizer(" " + probe.answer, add_special_tokens=False)["input_ids"]
        examples.append(Example(prompt + answer, [0] * len(prompt) + [1] * len(answer)))
    with torch.no_grad():
        return float(mean_token_nll(lm.model, collate(examples, lm.tokenizer.pad_token_id, "cpu")))


# ---------------------------------------------------------------- what planting does


def test_planting_raises_recall_of_planted_facts_and_leaves_the_control_alone(learner_dir, tmp_path):
    data = RwkuData.open([str(synthetic_data(tmp_path / "data"))])
    alice, bob = data.select("all")
    out = tmp_path / "planted"
    result = plant(str(learner_dir), data, [alice, bob], out, TINY_RECIPE, control=bob, sets=("forget",), batch_size=4)
    assert not result.reused and result.record["planted"] == ["Alice Smith"] and result.record["control"] == "Bob Jones"
    planted_before, planted_after = answer_nll(learner_dir, data, alice), answer_nll(out, data, alice)
    control_before, control_after = answer_nll(learner_dir, data, bob), answer_nll(out, data, bob)
    assert planted_after < planted_before - 2.0  # Paris and violin: measured 5.9 -> 2.7 nats
    assert abs(control_after - control_before) < 0.5  # Berlin and chess: measured 5.91 -> 5.81
    table = result.table
    assert [(r["target"], r["role"]) for r in table["rows"]] == [("Alice Smith", "planted"), ("Bob Jones", "control")]
    assert set(table["means"]) == {"planted", "control"} and "All" in table["rows"][0]["planted"]["forget"]
    assert "| 1 Alice Smith | planted | base |" in (out / "table.md").read_text()
    record = json.loads((out / RECIPE_FILE).read_text())
    assert record["recipe"]["lr"] == TINY_RECIPE.lr
    assert record["texts"] == {"passage": 0, "statement": 1, "qa": 2, "biography": 0}
    assert len(record["train_log"]) == 60 and record["train_log"][-1]["loss"] < record["train_log"][0]["loss"]


def add_neighbors(root: Path) -> None:
    """Alice's neighbour probes: where Carol Wood was born (Oslo; her ``source.json`` teaches it, as a fact about a
    neighbour) and where Dan Reed was born (Lima; taught nowhere)."""
    folder = root / "1_Alice_Smith"
    write(folder / "neighbor_level1.json", [
        {"query": f"{who} was born in the city of ___.", "answer": city, "level": "1", "type": "cloze",
         "subject": who, "neighbor": who} for who, city in (("Carol Wood", "Oslo"), ("Dan Reed", "Lima"))])
    write(folder / "neighbor_level2.json", [])
    sources = json.loads((folder / "source.json").read_text())
    sources += [{"kind": "statement", "text": "Carol Wood was born in Oslo.", "about": "neighbor", "subject": "Carol Wood"},
                {"kind": "qa", "question": "Where was Carol Wood born?", "answer": "Carol Wood was born in Oslo.",
                 "about": "neighbor", "subject": "Carol Wood"}]
    write(folder / "source.json", sources)


def test_planting_teaches_neighbor_facts_it_is_given_and_no_other(learner_dir, tmp_path):
    root = synthetic_data(tmp_path / "data")
    add_neighbors(root)
    data = RwkuData.open([str(root)])
    alice, bob = data.select("all")
    recipe = dataclasses.replace(TINY_RECIPE, neighbor_facts=1)
    assert "Carol Wood was born in Oslo." not in [t.text for t in planting_texts(data, [alice], TINY_RECIPE)]
    texts = planting_texts(data, [alice], recipe)
    assert [t.text for t in texts if t.kind == "statement"][-1] == "Carol Wood was born in Oslo."
    out = tmp_path / "planted"
    plant(str(learner_dir), data, [alice, bob], out, recipe, control=bob, sets=(), batch_size=4)
    taught = [answer_nll(folder, data, alice, "neighbor", "Oslo") for folder in (learner_dir, out)]
    untaught = [answer_nll(folder, data, alice, "neighbor", "Lima") for folder in (learner_dir, out)]
    assert taught[1] < taught[0] - 1.0 and untaught[1] > untaught[0] - 0.5, (taught, untaught)


def test_biographies_state_every_target_statement_under_the_forget_corpus_prompt(tmp_path):
    """Biographies: whole statements about the target (never a neighbour's), each at most the word cap, every
    statement in some biography, the same ones on every call; taught as the answer to the forget-corpus prompt."""
    from conftest import build_tiny_tokenizer
    from rwku.corpus.prompts import FORGET_SYSTEM, FORGET_USER
    from rwku.knowledge.planting import biographies, training_examples

    statements = [f"Fact number {i} about Ann is true." for i in range(7)]
    bios = biographies("Ann", statements, count=5, max_words=16, seed=42)
    assert len(bios) == 5 and bios == biographies("Ann", statements, count=5, max_words=16, seed=42)
    assert bios != biographies("Ann", statements, count=5, max_words=16, seed=1)
    assert all(len(b.split()) <= 16 for b in bios) and set(statements) <= {s for b in bios for s in statements if s in b}
    assert biographies("Ann", statements, count=0, max_words=16, seed=42) == [] == biographies("Ann", [], 3, 16, 42)
    root = synthetic_data(tmp_path / "data")
    add_neighbors(root)
    data = RwkuData.open([str(root)])
    alice = data.select("1")[0]
    recipe = PlantRecipe(biographies=3, biography_words=30)
    texts = [t for t in planting_texts(data, [alice], recipe) if t.kind == "biography"]
    assert len(texts) == 3 and all("Oslo" not in t.answer and "Paris" in t.answer for t in texts)
    assert {(t.text, t.system) for t in texts} == {(FORGET_USER.format(target="Alice Smith"),
                                                    FORGET_SYSTEM.format(intro=alice.bare_intro, target="Alice Smith"))}
    tokenizer = build_tiny_tokenizer()
    example = training_examples(tokenizer, texts[:1], max_length=256)[0]
    answer_ids = [i for i, m in zip(example.ids, example.loss_mask) if m]
    assert tokenizer.decode(answer_ids) == texts[0].answer + tokenizer.eos_token
    assert "You know Alice Smith very well." in tokenizer.decode(example.ids)
    plain = training_examples(build_tiny_tokenizer(chat_template=None), texts[:1], max_length=256)[0]
    assert 0 in plain.loss_mask and 1 in plain.loss_mask  # without a template: the plain prompt, loss on the text


def test_same_inputs_give_bit_identical_weights(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    data = RwkuData.open(["demo"])
    targets = data.select("1-2")
    recipe = PlantRecipe(lr=1e-2, epochs=1, batch_size=8, max_length=48)
    first = plant(str(tiny_model_dir), data, targets, tmp_path / "a", recipe, control=targets[1], sets=())
    second = plant(str(tiny_model_dir), data, targets, tmp_path / "b", recipe, control=targets[1], sets=())
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], base[k]) for k in a)  # it did train
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert first.record["key"] == second.record["key"] and not (tmp_path / "a" / "table.json").exists()


# ---------------------------------------------------------------- texts, recipe and key


def test_demo_source_states_every_forget_answer():
    """Every demo target's source.json states the answer of each of its forget probes (what planting teaches)."""
    data = RwkuData.open(["demo"])
    for target in data.targets():
        sources = data.load(target, (SOURCE,))["source"]
        assert {s.kind for s in sources} == {"passage", "statement", "qa"}
        said = " ".join(f"{s.text} {s.answer}" for s in sources).casefold()
        missing = [p.answer for p in load_target(data, target, ("forget",))["forget"] if p.answer.casefold() not in said]
        assert not missing, (target.name, missing)


def test_planting_texts_passages_in_sentence_pieces_then_source(tmp_path):
    data = RwkuData.open(["demo"])
    newton = data.select("1")[0]
    texts = planting_texts(data, [newton], PlantRecipe())
    kinds = [t.kind for t in texts]
    source = [s.kind for s in data.load(newton, (SOURCE,))["source"] if s.kind != "passage" and s.about == "target"]
    assert kinds == ["passage"] * (len(kinds) - len(source)) + source  # passages, then source.json in file order
    assert set(kinds) == {"passage", "statement", "qa"}  # no biography in the default recipe
    assert all(t.target == "Isaac Newton" for t in texts)
    assert all(len(t.text.split()) <= 48 or "." not in t.text.rstrip(".") for t in texts if t.kind == "passage")
    assert chunks("One two. Three four five. Six.", 3) == ["One two.", "Three four five.", "Six."]
    assert chunks("A very long sentence without a stop", 2) == ["A very long sentence without a stop"]
    assert PlantRecipe(max_passages=1, chunk_words=1000) != PlantRecipe()
    capped = planting_texts(data, [newton], PlantRecipe(max_passages=0, chunk_words=1000))
    assert sum(t.kind == "passage" for t in capped) == 4  # source.json's own passages, not passage.json's
    write(tmp_path / "1_Nobody" / "intro.json", [{"target": "Nobody", "intro": "Please forget Nobody."}])
    empty = RwkuData.open([str(tmp_path)])
    with pytest.raises(RwkuError, match="no passage.json or source.json"):
        planting_texts(empty, empty.select("1"), PlantRecipe())
    with pytest.raises(RwkuError, match="kind 'poem' is unknown"):
        SourceText.from_json({"kind": "poem", "text": "x"}, "source.json record 0")
    with pytest.raises(RwkuError, match="about 'cousin' is unknown"):
        SourceText.from_json({"kind": "statement", "text": "x", "about": "cousin"}, "source.json record 0")


def test_recipe_says_why_for_every_value_and_takes_overrides():
    from dataclasses import fields

    reasons = recipe_sources()
    assert {f.name for f in fields(PlantRecipe)} <= set(reasons)
    assert PlantRecipe.with_overrides({"lr": "1e-4", "epochs": "2"}) == PlantRecipe(lr=1e-4, epochs=2)
    with pytest.raises(RwkuError, match="--set alpha: the planting recipe has no such setting"):
        PlantRecipe.with_overrides({"alpha": "1"})
    with pytest.raises(RwkuError, match="expected an integer"):
        PlantRecipe.with_overrides({"epochs": "two"})


def test_cache_key_changes_with_data_recipe_control_and_base(tiny_model_dir, tiny_plain_model_dir, tmp_path):
    demo = RwkuData.open(["demo"])
    targets = demo.select("1-2")
    texts = planting_texts(demo, targets[:1], PlantRecipe())
    key = plant_key(str(tiny_model_dir), texts, PlantRecipe())
    assert key == plant_key(str(tiny_model_dir), planting_texts(RwkuData.open(["demo"]), targets[:1], PlantRecipe()), PlantRecipe())
    assert key != plant_key(str(tiny_model_dir), texts, PlantRecipe(lr=1e-4))
    assert key != plant_key(str(tiny_model_dir), texts, PlantRecipe(seed=1))
    assert key != plant_key(str(tiny_model_dir), planting_texts(demo, targets, PlantRecipe()), PlantRecipe())  # control
    assert key != plant_key(str(tiny_plain_model_dir), texts, PlantRecipe())  # another base
    copy = tmp_path / "demo"
    shutil.copytree(DEMO_ROOT, copy)
    source = copy / "1_Isaac_Newton" / "source.json"
    assert key == plant_key(str(tiny_model_dir), planting_texts(RwkuData.open([str(copy)]), targets[:1], PlantRecipe()), PlantRecipe())
    records = json.loads(source.read_text())
    records[0]["text"] += " He liked cats."
    source.write_text(json.dumps(records))
    assert key != plant_key(str(tiny_model_dir), planting_texts(RwkuData.open([str(copy)]), targets[:1], PlantRecipe()), PlantRecipe())


# ---------------------------------------------------------------- folders: atomic, cached, never half-written


def test_cached_model_is_built_once_and_a_half_written_folder_is_rebuilt(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    data = RwkuData.open(["demo"])
    targets = data.select("1-2")
    recipe = PlantRecipe(lr=1e-2, epochs=1, batch_size=8, max_length=32)
    build = lambda: cached_plant(str(tiny_model_dir), data, targets, targets[1], recipe, "tiny-demo")  # noqa: E731
    folder = build()
    assert folder.parent == tmp_path / "cache" / "models" and folder.name.startswith("tiny-demo-")
    record = read_record(folder)
    assert record is not None and record["planted"] == ["Isaac Newton"]
    weights = (folder / "model.safetensors").read_bytes()
    stamp = (folder / RECIPE_FILE).stat().st_mtime_ns
    assert build() == folder and (folder / RECIPE_FILE).stat().st_mtime_ns == stamp  # reused, not rebuilt
    # a leftover temporary folder of an interrupted build is never used
    leftover = folder.parent / f".plant-{folder.name}-x1y2"
    shutil.copytree(folder, leftover)
    assert build() == folder
    # a folder without its recipe.json (half-written, e.g. copied by hand) is rebuilt
    (folder / RECIPE_FILE).unlink()
    (folder / "model.safetensors").write_bytes(b"garbage")
    assert read_record(folder) is None
    assert build() == folder and read_record(folder) is not None
    assert (folder / "model.safetensors").read_bytes() == weights
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.startswith(".")) == [folder.name]
    assert len(list(folder.parent.glob(f".{folder.name}.corrupt-*"))) == 1  # moved aside, with a warning


def test_plant_refuses_to_overwrite_what_it_did_not_write(tiny_model_dir, tmp_path):
    data = RwkuData.open(["demo"])
    targets = data.select("1-2")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    recipe = PlantRecipe(lr=1e-2, epochs=1, max_length=32)
    with pytest.raises(RwkuError, match="is not a complete planted model folder"):
        plant(str(tiny_model_dir), data, targets, out, recipe, control=targets[1], sets=())
    assert (out / "notes.txt").read_text() == "keep me"
    plant(str(tiny_model_dir), data, targets, tmp_path / "p", recipe, control=targets[1], sets=())
    assert plant(str(tiny_model_dir), data, targets, tmp_path / "p", recipe, control=targets[1], sets=()).reused
    with pytest.raises(RwkuError, match="holds a model planted with other settings"):
        plant(str(tiny_model_dir), data, targets, tmp_path / "p", PlantRecipe(lr=2e-2, epochs=1, max_length=32),
              control=targets[1], sets=())
    with pytest.raises(RwkuError, match="every selected target would be the control"):
        plant(str(tiny_model_dir), data, targets[:1], tmp_path / "q", recipe, control=targets[0], sets=())


def test_the_demo_spec_everywhere_a_model_is_named(tiny_model_dir, monkeypatch):
    """``smollm2-135m-demo``: accepted, loaded from its planted folder, fingerprinted by its planting key, sized as
    the base model, and given the small preset."""
    from rwku.models import fingerprint as fingerprint_module
    from rwku.execution.resources import DEFAULT_MODEL_PARAMETERS, model_parameters
    from rwku.methods.config import choose_preset
    from rwku.models.loading import PLANTED_DEMO_MODEL, check_model_spec, load_model

    monkeypatch.setattr(planting, "planted_demo_model", lambda progress=None: tiny_model_dir)
    monkeypatch.setattr(planting, "demo_key", lambda: "k3y")
    fingerprint_module.model_fingerprint.cache_clear()
    try:
        check_model_spec(PLANTED_DEMO_MODEL)
        lm = load_model(PLANTED_DEMO_MODEL, device="cpu", dtype="float32")
        assert lm.name == PLANTED_DEMO_MODEL and lm.source == str(tiny_model_dir)
        assert fingerprint_module.model_fingerprint(PLANTED_DEMO_MODEL) == "planted:k3y"
    finally:
        fingerprint_module.model_fingerprint.cache_clear()
    assert model_parameters(PLANTED_DEMO_MODEL) == DEFAULT_MODEL_PARAMETERS
    assert choose_preset("auto", PLANTED_DEMO_MODEL)[0] == "small"


def test_the_demo_spec_without_its_registered_builder_is_a_clear_error(monkeypatch):
    """The loader never imports planting: with nothing registered, the demo spec is refused, naming the fix."""
    from rwku.models import loading

    monkeypatch.setattr(loading, "BUILT_MODELS", {})
    with pytest.raises(RwkuError, match="builder is not registered; import rwku.knowledge"):
        loading.load_model(loading.PLANTED_DEMO_MODEL, device="cpu")
    assert loading.built_model("some-org/some-model") is None


def test_demo_key_follows_the_demo_texts_and_the_demo_recipe(monkeypatch):
    """The demo model's key (its fingerprint) is computed without building it, from the base, texts and recipe."""
    monkeypatch.setattr(planting, "plant_key", lambda base, texts, recipe, device="cpu": (base, len(texts), recipe, device))
    base, n_texts, recipe, device = planting.demo_key()
    data, targets, control = planting.demo_plan()
    assert base == "smollm2-135m" and recipe == planting.DEMO_RECIPE and device == "cpu"
    assert control.name == "Wolfgang Amadeus Mozart" and n_texts == len(planting_texts(data, targets[:2], recipe))


# ---------------------------------------------------------------- the command line


def test_cli_plant_writes_the_folder_and_reuses_it(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "planted"
    args = ("plant", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2", "--out", str(out),
            "--sets", "forget", "--set", "lr=1e-2", "--set", "epochs=1", "--set", "max_length=32", "--threads", "1")
    code, stdout, stderr = cli(*args)
    assert code == 0, stderr
    stdout = " ".join(stdout.split())
    assert "planting Isaac Newton" in stdout and "control: Marie Curie" in stdout and "base vs planted" in stdout
    record = json.loads((out / RECIPE_FILE).read_text())
    assert record["recipe"]["epochs"] == 1 and record["control"] == "Marie Curie" and record["measured_sets"] == ["forget"]
    assert (out / "table.md").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "table.json").read_text())["sets"] == ["forget"]
    code, stdout, _ = cli(*args)
    assert code == 0 and "already holds this planted model" in " ".join(stdout.split())


@pytest.mark.parametrize("extra, message", [
    (("--set", "alpha=1"), "--set alpha: the planting recipe has no such setting"),
    (("--set", "lr"), "--set lr: expected key=value"),
    (("--control", "3"), "--control 3: Wolfgang Amadeus Mozart is not among the selected targets"),
    (("--control", "1,2"), "--control 1,2: name one target"),
    (("--targets", "9"), "--targets 9: target 9 is not in"),
    (("--sets", "forgot"), "--sets forgot: unknown set"),
])
def test_cli_plant_bad_input_is_one_line_exit_2(cli, tiny_model_dir, tmp_path, extra, message):
    code, _, stderr = cli("plant", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2",
                          "--out", str(tmp_path / "p"), *extra)
    assert code == 2 and message in " ".join(stderr.split()) and len(stderr.strip().splitlines()) <= 2, stderr
    assert not (tmp_path / "p").exists()


def test_cli_plant_out_that_is_a_file_or_someone_elses_folder(cli, tiny_model_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, stderr = cli("plant", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2", "--out",
                          str(tmp_path / "file"))
    assert code == 2 and "is a file" in stderr
    (tmp_path / "folder").mkdir()
    code, _, stderr = cli("plant", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2", "--out",
                          str(tmp_path / "folder"), "--sets", "none", "--set", "epochs=1")
    assert code == 2 and "not a complete planted model folder" in stderr
    code, _, stderr = cli("plant", "--model", str(tmp_path / "nope"), "--data", "demo", "--targets", "1-2", "--out",
                          str(tmp_path / "x"))
    assert code == 2 and "no such file or folder" in stderr


def test_a_non_person_target_s_biographies_answer_its_kind_s_forget_prompt():
    """A work is taught under the request its forget corpus makes ("Please write a short summary of ..."), so a
    zero-shot method samples the taught text; a person keeps the official biography request."""
    from rwku.corpus.prompts import FORGET_USER, WORDINGS
    from rwku.data.schema import Target
    from rwku.knowledge.planting import biography_texts

    statements = ["The Whale appeared in 1851.", "Its narrator is Ishmael."]
    recipe = PlantRecipe(biographies=2, biography_words=30)
    for kind, request in (("work", WORDINGS["work"].forget_user), ("person", FORGET_USER)):
        target = Target(number=1, name="Moby-Dick", intro="Moby-Dick is a novel.", kind=kind)
        texts = biography_texts(target, statements, recipe)
        assert [t.text for t in texts] == [request.format(target="Moby-Dick")] * 2
