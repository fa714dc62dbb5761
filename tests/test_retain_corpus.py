"""The zero-shot retain corpus: the shipped list names no target and no neighbour entity (of the demo data and of
the RWKU release), texts that mention one of the unit's are dropped, the texts are cached like the other corpora,
and ``--corpus official`` (no retain texts) makes a method that needs them say so in one line."""

from __future__ import annotations

import pytest
import torch

from rwku.corpus.build import CorpusSpec
from rwku.corpus.retain import (
    build_retain,
    drop_mentions,
    excluded_names,
    mention_pattern,
    name_forms,
    neighbor_entities,
    retain_people,
)
from rwku.data import RwkuData
from rwku.evaluation.context import no_progress
from rwku.models.prompting import PromptFormat


def clashes(people, names) -> list[tuple[str, str]]:
    """(person, name) pairs where a form of the name appears in the person's name or the person's name in the form,
    as whole words, case-insensitively."""
    found = []
    for person in people:
        for name in names:
            forms = [form.lower() for form in name_forms(name)]
            if any(mention_pattern([form]).search(person.lower()) or mention_pattern([person.lower()]).search(form)
                   for form in forms):
                found.append((person, name))
    return found


def data_names(data: RwkuData) -> list[str]:
    return excluded_names(data, data.targets())


def test_the_list_is_long_and_has_no_repeats():
    people = retain_people()
    assert len(people) >= 100 and len(set(people)) == len(people)


def test_the_list_names_no_demo_target_or_neighbor():
    names = data_names(RwkuData.open(["demo"]))
    assert "Isaac Newton" in names and "Gottfried Wilhelm Leibniz" in names  # the ruler reads the neighbours
    assert clashes(retain_people(), names) == []


@pytest.mark.integration
def test_the_list_names_none_of_the_200_targets_nor_any_neighbor_entity(shared_data):
    data = RwkuData.open([str(shared_data / "strzar-purge")])
    targets = data.targets()
    neighbors = {n for t in targets for n in neighbor_entities(data, t)}
    assert len(targets) == 200 and len(neighbors) > 600
    assert clashes(retain_people(), [t.name for t in targets] + sorted(neighbors)) == []


def test_the_check_catches_a_person_on_the_list():
    """The ruler above can fail: a target, a neighbour and a neighbour's bare form are each caught."""
    names = ["Isaac Newton", "Heat (1995 film)", "Prince Harry, Duke of Sussex"]
    assert clashes(["Isaac Newton", "Heat", "Prince Harry", "Jane Austen"], names) == [
        ("Isaac Newton", "Isaac Newton"), ("Heat", "Heat (1995 film)"), ("Prince Harry", "Prince Harry, Duke of Sussex")]


def test_texts_mentioning_a_target_or_a_neighbor_are_dropped():
    texts = ["Jane Austen admired Isaac Newton.", "Galileo met Edmond Halley in a dream.", "Heat is a film.",
             "Prince Harry visited.", "Charles Darwin sailed on the Beagle.", "a heat wave in Newtonville"]
    kept, dropped = drop_mentions(texts, ["Isaac Newton", "Edmond Halley", "Heat (1995 film)", "Prince Harry, Duke of Sussex"])
    assert kept == ["Charles Darwin sailed on the Beagle.", "a heat wave in Newtonville"] and dropped == 4
    assert drop_mentions(texts, []) == (texts, 0)


def test_a_units_exclusion_is_its_targets_and_their_neighbors():
    data = RwkuData.open(["demo"])
    names = excluded_names(data, data.select("1-2"))
    assert {"Isaac Newton", "Marie Curie", "Royal Society", "Pierre Curie"} <= set(names)
    assert "Wolfgang Amadeus Mozart" not in names and "Antonio Salieri" not in names


def test_retain_texts_are_about_the_list_cached_and_filtered_per_unit(tiny_lm, tmp_path, monkeypatch):
    spec = CorpusSpec(size=4, max_new_tokens=5)
    prompts = PromptFormat(tiny_lm.tokenizer)
    seen: list[list[str]] = []

    def fake_sample(lm, rendered, spec, max_new_tokens, on_batch=None, *, stream):
        seen.append(list(rendered))
        return [" was a friend of Isaac Newton.", " lived.", " met Antonio Salieri.", " wrote."]

    monkeypatch.setattr("rwku.corpus.retain.sample", fake_sample)
    texts, dropped = build_retain(tiny_lm, spec, prompts=prompts, progress=no_progress, excluded=["Isaac Newton"],
                                  cache_dir=tmp_path)
    people = retain_people()
    assert len(seen[0]) == 4 and all(f"biography of {people[i]}." in seen[0][i] for i in range(4))
    assert seen[0][1].endswith(spec.prefixes[1]) and "Isaac Newton" not in "".join(seen[0])
    assert dropped == 1 and texts == [spec.prefixes[1] + " lived.", spec.prefixes[2] + " met Antonio Salieri.",
                                      spec.prefixes[3] + " wrote."]

    def no_sampling(*args, **kwargs):
        raise AssertionError("the cached retain texts should have been reused")

    monkeypatch.setattr("rwku.corpus.retain.sample", no_sampling)
    other_unit = build_retain(tiny_lm, spec, prompts=prompts, progress=no_progress, excluded=["Antonio Salieri"],
                              cache_dir=tmp_path)
    assert other_unit[1] == 1 and len(other_unit[0]) == 3  # one cache, each unit's own exclusion
    with pytest.raises(AssertionError):  # another seed is another corpus
        build_retain(tiny_lm, CorpusSpec(size=4, max_new_tokens=5, seed=1), prompts=prompts, progress=no_progress,
                     excluded=[], cache_dir=tmp_path)


def test_retain_sampling_is_seeded_and_leaves_the_global_random_state_alone(tiny_lm, tmp_path):
    spec = CorpusSpec(size=2, max_new_tokens=4)
    prompts = PromptFormat(tiny_lm.tokenizer)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    first = build_retain(tiny_lm, spec, prompts=prompts, progress=no_progress, excluded=[], cache_dir=tmp_path / "a")
    assert torch.equal(torch.get_rng_state(), state)
    again = build_retain(tiny_lm, spec, prompts=prompts, progress=no_progress, excluded=[], cache_dir=tmp_path / "b")
    assert first == again and len(first[0]) == 2
