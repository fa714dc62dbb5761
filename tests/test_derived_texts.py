"""Texts derived from passages for planting real targets (:mod:`rwku.knowledge.derived_texts`): the rules, the guard
that keeps every probe question out, and a tiny planted model that learns a fact its target states only in a
passage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from test_planting import answer_nll, learner_dir, write  # noqa: F401  (learner_dir is a fixture)

from rwku.data.loader import RwkuData
from rwku.evaluation.sets import load_target
from rwku.knowledge.derived_texts import (
    DerivedText,
    anchored,
    blank_spans,
    derive,
    drop_probe_questions,
    lifespan_statements,
    normalised_words,
    surname,
    who_question,
)
from rwku.knowledge.planting import REAL_RECIPE, PlantRecipe, choose_recipe, plant, planting_texts

PASSAGE = ("Alice Marie Smith (born March 3, 1961) is a French violinist. == Early life == She was born in Lyon "
           "and studied at the Paris Conservatoire. Smith won the Prix Lumière in 1984. Her first album was "
           "Winter Roads. The orchestra toured Japan that year.")


def test_rules_name_the_target_and_cut_blanks_and_who_questions():
    assert surname("Alice Smith") == "Smith" and surname("Martin Luther King Jr.") == "King"
    assert surname("Prince Harry, Duke of Sussex") == "Harry" and surname("Beyoncé") == "Beyoncé"
    assert anchored("She was born in Lyon.", "Alice Smith") == "Alice Smith was born in Lyon."
    assert anchored("Her first album was Winter Roads.", "Alice Smith") == "Alice Smith's first album was Winter Roads."
    assert anchored("In 1984, Smith won a prize (twice).", "Alice Smith") == "In 1984, Alice Smith won a prize."
    assert anchored("Alice Marie Smith is a violinist.", "Alice Smith") == "Alice Marie Smith is a violinist."
    assert anchored("The orchestra toured Japan.", "Alice Smith") is None
    assert lifespan_statements("Ann Lee (October 11, 1966 – March 4, 2019) was an actor.", "Ann Lee") == [
        "Ann Lee was born on October 11, 1966.", "Ann Lee died on March 4, 2019."]
    statement = "Alice Smith won the Prix Lumière in 1984 with Bob Stone."
    cut = [statement[a:b] for a, b in blank_spans(statement, "Alice Smith", limit=3)]
    assert cut == ["Prix Lumière", "1984", "Bob Stone"]
    assert [statement[a:b] for a, b in blank_spans(statement, "Alice Smith", limit=1)] == ["Prix Lumière"]
    assert who_question("Alice Smith won the Prix Lumière in 1984.", "Alice Smith") == "Who won the Prix Lumière in 1984?"
    assert who_question("Alice Smith's album sold.", "Alice Smith") is None


def test_derive_writes_statements_blanks_and_who_questions_from_a_passage():
    texts = derive([PASSAGE], "Alice Smith", blanks_per_sentence=2)
    statements = [t.text for t in texts if t.kind == "statement"]
    assert statements == ["Alice Smith was born on March 3, 1961.", "Alice Marie Smith is a French violinist.",
                          "Alice Smith was born in Lyon and studied at the Paris Conservatoire.",
                          "Alice Smith won the Prix Lumière in 1984.", "Alice Smith's first album was Winter Roads."]
    qa = {(t.text, t.answer) for t in texts if t.kind == "qa"}
    assert ("Fill in the blank: Alice Smith was born in ___ and studied at the Paris Conservatoire.", "Lyon") in qa
    assert ("Fill in the blank: Alice Smith won the Prix Lumière in ___.", "1984") in qa
    assert ("Who won the Prix Lumière in 1984?", "Alice Smith") in qa
    assert not any("Japan" in t.text for t in texts)  # a sentence that does not name her
    assert len(texts) == len({(t.text, t.answer) for t in texts})


def test_guard_drops_a_derived_text_that_contains_a_probe_question():
    texts = [DerivedText("qa", "Fill in the blank: Alice Smith won the Prix Lumière in ___.", "1984"),
             DerivedText("statement", "Alice Smith won the Prix Lumière in 1984."),
             DerivedText("qa", "Who won the Prix Lumière in 1984?", "Alice Smith")]
    kept, dropped = drop_probe_questions(texts, ["Alice Smith won the Prix Lumiere in ___.".replace("Lumiere", "Lumière"),
                                                 "Who won the Prix Lumière in 1984?"])
    assert dropped == 2 and kept == [texts[1]]  # the statement of the fact is not the blanked question
    assert normalised_words("The  Prix, ___!") == " prix blankmark "


def real_like_data(root: Path) -> RwkuData:
    """Two targets as real RWKU has them: passages and probes, no source.json. Alice's probes ask what her passage
    says, one of them in the words a derivation rule would write; Bob (the control) is never planted."""
    for slug, name, passage, city in (("1_Alice_Smith", "Alice Smith", PASSAGE, "Lyon"),
                                      ("2_Bob_Stone", "Bob Stone", "Bob Stone is a chess player. He was born in Oslo.", "Oslo")):
        folder = root / slug
        write(folder / "intro.json", [{"target": name, "intro": f"Please forget {name}."}])
        write(folder / "passage.json", [{"text": passage}])
        write(folder / "forget_level1.json", [
            {"query": f"{name} was born in ___ and studied at the Paris Conservatoire.", "answer": city, "level": "1",
             "type": "cloze", "subject": name}])
        write(folder / "forget_level2.json", [{"query": f"Where was {name} born?", "answer": city, "level": "2",
                                               "type": "simple question", "subject": name}])
        write(folder / "forget_level3.json", [{"query": "Who won the Prix Lumière in 1984?", "answer": name,
                                               "level": "3", "type": "reverse query", "subject": name}])
        write(folder / "neighbor_level1.json", [{"query": "The Paris Conservatoire is in ___.", "answer": "Paris",
                                                 "level": "1", "type": "cloze", "subject": name}])
        write(folder / "neighbor_level2.json", [{"query": "Where is the Paris Conservatoire?", "answer": "Paris",
                                                 "level": "2", "type": "simple question", "subject": name}])
    return RwkuData.open([str(root)])


def test_planting_texts_of_a_real_target_never_contain_a_probe_question(tmp_path):
    data = real_like_data(tmp_path / "data")
    alice = data.select("1")[0]
    assert choose_recipe("auto", data, [alice]) == REAL_RECIPE and choose_recipe("auto", RwkuData.open(["demo"]), RwkuData.open(["demo"]).select("1")) == PlantRecipe()
    unguarded = derive([PASSAGE], alice.name)
    probes = [p.query for part in ("forget", "neighbor") for p in load_target(data, alice, ("forget", "neighbor"))[part]]
    contains = lambda text: any(normalised_words(q) in normalised_words(text) for q in probes)  # noqa: E731
    assert sum(contains(f"{t.text} {t.answer}") for t in unguarded) == 2  # the rules alone would write two of them
    texts = planting_texts(data, [alice], REAL_RECIPE)
    assert {t.kind for t in texts} == {"passage", "statement", "qa"}
    assert not any(contains(f"{t.text} {t.answer}") for t in texts if t.kind != "passage")
    assert len(texts) == sum(t.kind == "passage" for t in texts) + len(unguarded) - 2


def test_a_real_target_s_biographies_are_written_from_its_derived_statements(tmp_path):
    """A real target has no source.json: its biographies (the answers to the forget-corpus prompt) are made of the
    statements derived from its passages, so a zero-shot method samples what the passages say."""
    data = real_like_data(tmp_path / "data")
    alice = data.select("1")[0]
    texts = planting_texts(data, [alice], dataclasses.replace(REAL_RECIPE, biographies=2))
    statements = [t.text for t in texts if t.kind == "statement"]
    bios = [t.answer for t in texts if t.kind == "biography"]
    assert len(bios) == 2 and statements and all(any(s in bio for s in statements) for bio in bios)
    assert texts[:-2] == planting_texts(data, [alice], REAL_RECIPE)  # the other texts as before

def test_planted_model_recalls_a_fact_stated_only_in_a_passage(learner_dir, tmp_path):  # noqa: F811
    """Alice's birthplace is in her passage only (no source.json); the real recipe's texts teach it."""
    data = real_like_data(tmp_path / "data")
    alice, bob = data.select("all")
    recipe = PlantRecipe(lr=3e-3, epochs=30, batch_size=4, max_length=64, max_passages=1000, derive=1)
    plant(str(learner_dir), data, [alice, bob], tmp_path / "planted", recipe, control=bob, sets=())
    before, after = answer_nll(learner_dir, data, alice), answer_nll(tmp_path / "planted", data, alice)
    control_before, control_after = answer_nll(learner_dir, data, bob), answer_nll(tmp_path / "planted", data, bob)
    assert after < before - 2.0, (before, after)  # Lyon and her name: measured 6.0 -> 2.3 nats
    assert control_after > control_before - 0.5, (control_before, control_after)  # Oslo is never taught: 6.0 -> 7.3, no gain


def test_real_recipe_texts_are_deterministic_and_keyed(tmp_path):
    """The same passages give the same texts and key; derived texts join the key only when they are used (a model
    planted without them keeps the key it had before they existed)."""
    from dataclasses import asdict

    from rwku.knowledge.planting import plant_key, recipe_key

    data = real_like_data(tmp_path / "data")
    alice = data.select("1")[0]
    texts = planting_texts(data, [alice], REAL_RECIPE)
    assert texts == planting_texts(real_like_data(tmp_path / "again"), [alice], REAL_RECIPE)
    key = plant_key("smollm2-135m", texts, REAL_RECIPE)
    assert key == plant_key("smollm2-135m", planting_texts(data, [alice], REAL_RECIPE), REAL_RECIPE)
    assert key != plant_key("smollm2-135m", texts, PlantRecipe(**{**asdict(REAL_RECIPE), "blanks_per_sentence": 1}))
    assert set(asdict(PlantRecipe())) - set(recipe_key(PlantRecipe())) == {
        "derive", "blanks_per_sentence", "biographies", "biography_words", "neighbor_facts"}
    assert set(recipe_key(REAL_RECIPE)) == set(asdict(REAL_RECIPE)) - {"biographies", "biography_words", "neighbor_facts"}
    assert PlantRecipe.with_overrides({"epochs": "2"}, REAL_RECIPE) == PlantRecipe(**{**asdict(REAL_RECIPE), "epochs": 2})


def test_cli_plant_unknown_recipe_is_one_line_exit_2(cli, tiny_model_dir, tmp_path):
    code, _, stderr = cli("plant", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2",
                          "--out", str(tmp_path / "p"), "--recipe", "fancy")
    assert code == 2 and "--recipe fancy: unknown; choose auto, demo, demo-forgets, real" in " ".join(stderr.split()), stderr
    assert not (tmp_path / "p").exists()
