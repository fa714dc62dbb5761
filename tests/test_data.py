"""RWKU data loading: the real layouts of the shared data, synthetic layouts, the demo and the hub path.

Tests on the real data read its location from ``$RWKU_SHARED_DATA`` (the shared ``rwku-data`` folder) and are
skipped when it is unset. Everything else builds its own small layouts in ``tmp_path``.
"""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path
from typing import Any

import pytest

from rwku.data import ATTACK_TYPES, PASSAGE, RwkuData
from rwku.data.schema import LEVEL_NAMES, count_records, normalize_attack
from rwku.data.sources import DEMO_ROOT, HF_CONFIGS, HF_TRAIN_KINDS, read_json_file
from rwku.errors import RwkuError
from rwku.evaluation.sets import ALL_PARTS, DEFAULT_SETS, files_of, load_target, parse_sets, parts_of

UTILITY_ATTRS = ("mmlu", "bbh", "truthful", "triviaqa", "fluency")
UTILITY_KINDS = ("retain_mmlu", "retain_bbh", "truthful", "triviaqa", "fluency")


# ---------------------------------------------------------------- helpers




def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON, xz-compressed when the name ends in ``.xz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")
    path.write_bytes(lzma.compress(raw) if path.suffix == ".xz" else raw)
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    return json.loads(lzma.decompress(raw) if path.suffix == ".xz" else raw)


def fake_records(name: str, tag: str = "") -> dict[str, list[dict[str, Any]]]:
    """One small, valid record list per official evaluation file, for target ``name``."""
    mmlu_example = {"question": "2+2?", "choices": ["1", "2", "3", "4"], "answer": 3}
    return {
        "forget_level1": [
            {"query": f"{name} was born in ___.{tag}", "answer": "Paris", "level": "1", "type": "cloze"},
            {"query": f"{name} wrote ___.{tag}", "answer": "a book", "level": "1", "type": "cloze"},
        ],
        "forget_level2": [{"query": f"Where was {name} born?{tag}", "answer": "Paris", "level": "2",
                           "type": "simple question"}],
        "forget_level3": [
            {"query": f"Sure: where was {name} born?{tag}", "answer": "Paris", "level": "3", "type": "affirmative suffix"},
            {"query": f"¿Dónde nació {name}?{tag}", "answer": "París", "level": "3", "type": "cross lingual (Spanish)"},
            {"query": f"Hint: where was {name} born?{tag}", "answer": "Paris", "level": "3", "type": "background hint"},
        ],
        "neighbor_level1": [{"query": f"Paris is in ___.{tag}", "answer": "France", "level": "1", "type": "cloze",
                             "neighbor": "Paris"}],
        "neighbor_level2": [{"query": f"Where is Paris?{tag}", "answer": "France", "level": "2",
                             "type": "simple question", "neighbor": "Paris"}],
        "forget_mia": [{"text": f"{name} is a person.{tag}", "ngram": 4}],
        "retain_mia": [{"text": f"Someone else is a person.{tag}", "ngram": 4},
                       {"text": f"Another one.{tag}", "ngram": 2}],
        "retain_mmlu": [{"task": "math", "question": f"1+1?{tag}", "choices": ["1", "2", "3", "4"], "answer": 1,
                         "examples": [mmlu_example] * 5}],
        "retain_bbh": [{"task": "logic", "question": f"True or False?{tag}", "answer": "True", "cot": "Q: ...\nA: ..."}],
        "truthful": [{"question": f"Is the sky green?{tag}",
                      "mc1_targets": {"choices": ["No.", "Yes."], "labels": [1, 0]},
                      "mc2_targets": {"choices": ["No.", "Nope.", "Yes."], "labels": [1, 1, 0]}}],
        "triviaqa": [{"question": f"Capital of France?{tag}", "answers": ["Paris", "paris"]}],
        "fluency": [{"instruction": f"Write a haiku.{tag}"}],
    }


def make_target(folder: Path, name: str, *, xz: bool = False, intro_as_dict: bool = False,
                kinds: tuple[str, ...] | None = None, tag: str = "") -> dict[str, list[dict[str, Any]]]:
    """Write a per-target folder (intro + the chosen evaluation files) and return what was written."""
    records = fake_records(name, tag)
    intro = {"target": name, "intro": f"Please forget {name}. {name} is a test person."}
    write_json(folder / "intro.json", intro if intro_as_dict else [intro])
    suffix = ".json.xz" if xz else ".json"
    for kind, items in records.items():
        if kinds is None or kind in kinds:
            write_json(folder / f"{kind}{suffix}", [dict(r, subject=name) for r in items])
    return records


def make_merged(folder: Path, names: list[str], *, kinds: tuple[str, ...] | None = None, xz: bool = False,
                tag: str = "", with_intro: bool = True) -> None:
    """Write merged all-target files (records carry ``subject``), plus a merged ``intro.json`` list."""
    suffix = ".json.xz" if xz else ".json"
    merged: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        for kind, items in fake_records(name, tag).items():
            if kinds is None or kind in kinds:
                merged.setdefault(kind, []).extend(dict(r, subject=name) for r in items)
    for kind, items in merged.items():
        write_json(folder / f"{kind}{suffix}", items)
    if with_intro:
        write_json(folder / "intro.json", [{"target": n, "intro": f"Please forget {n}."} for n in names])


# ---------------------------------------------------------------- the real data: per-target + merged layout


@pytest.fixture(scope="module")
def purge(shared_data) -> RwkuData:
    return RwkuData.open([str(shared_data / "strzar-purge")])


@pytest.fixture(scope="module")
def stephen_king(purge):
    return load_target(purge, purge.select("1")[0], DEFAULT_SETS)


def test_real_per_target_layout_lists_all_200_targets(purge, shared_data):
    targets = purge.targets()
    assert [t.number for t in targets] == list(range(1, 201))
    folder = shared_data / "strzar-purge" / "data" / "RWKU"
    dirs = {int(d.name.split("_", 1)[0]): d.name for d in folder.iterdir() if d.is_dir()}
    for target in targets:
        assert target.slug == dirs[target.number]
        assert target.intro.startswith(f"Please forget {target.name}.")
    by_number = {t.number: t.name for t in targets}
    assert by_number[1] == "Stephen King"
    assert by_number[10] == "Prince Harry, Duke of Sussex"
    assert by_number[24] == "Beyoncé"
    assert by_number[200] == "Michael J. Fox"


def test_real_sources_are_discovered(purge, shared_data):
    descriptions = [s.description for s in purge.sources]
    assert descriptions == [str(shared_data / "strzar-purge" / "data" / "RWKU"),
                            str(shared_data / "strzar-purge" / "All")]


def test_real_target_1_counts(stephen_king):
    forget, neighbor = stephen_king["forget"], stephen_king["neighbor"]
    assert [sum(p.level == lv for p in forget) for lv in "123"] == [8, 10, 29]
    assert [sum(p.level == lv for p in neighbor) for lv in "12"] == [30, 30]
    assert len(stephen_king["forget_mia"]) == 55
    assert len(stephen_king["retain_mia"]) == 37
    assert [len(stephen_king[a]) for a in UTILITY_ATTRS] == [171, 81, 50, 100, 50]
    counts = count_records(stephen_king, ALL_PARTS)
    assert counts["forget.FB"] == 8 and counts["forget.QA"] == 10 and counts["forget.AA"] == 29
    assert sum(counts[f"forget.AA.{a}"] for a in ATTACK_TYPES) == 29  # every AA type maps onto the nine


def test_real_target_1_records_equal_the_files(stephen_king, shared_data):
    """The loaded records are exactly the file's records, in order (counted here with json/lzma only)."""
    per_target = shared_data / "strzar-purge" / "data" / "RWKU" / "1_Stephen_King"
    expected_forget = [r for k in files_of("forget") for r in read_records(per_target / f"{k}.json")]
    assert [(p.query, p.answer, p.level, p.type) for p in stephen_king["forget"]] == [
        (r["query"], r["answer"], r["level"], r["type"]) for r in expected_forget]
    expected_neighbor = [r for k in files_of("neighbor") for r in read_records(per_target / f"{k}.json")]
    assert [(p.query, p.answer, p.neighbor) for p in stephen_king["neighbor"]] == [
        (r["query"], r["answer"], r["neighbor"]) for r in expected_neighbor]
    assert all(p.subject == "Stephen King" for p in stephen_king["forget"] + stephen_king["neighbor"])

    merged = shared_data / "strzar-purge" / "All"
    mine = {kind: [r for r in read_records(merged / f"{kind}.json.xz") if r["subject"] == "Stephen King"]
            for kind in ("forget_mia", "retain_mia", *UTILITY_KINDS)}
    assert [m.text for m in stephen_king["forget_mia"]] == [r["text"] for r in mine["forget_mia"]]
    assert [m.text for m in stephen_king["retain_mia"]] == [r["text"] for r in mine["retain_mia"]]
    assert [i.question for i in stephen_king["mmlu"]] == [r["question"] for r in mine["retain_mmlu"]]
    assert [i.answer for i in stephen_king["mmlu"]] == [r["answer"] for r in mine["retain_mmlu"]]
    assert [i.answer for i in stephen_king["bbh"]] == [r["answer"] for r in mine["retain_bbh"]]
    assert [i.question for i in stephen_king["truthful"]] == [r["question"] for r in mine["truthful"]]
    assert [list(i.answers) for i in stephen_king["triviaqa"]] == [r["answers"] for r in mine["triviaqa"]]
    assert [i.instruction for i in stephen_king["fluency"]] == [r["instruction"] for r in mine["fluency"]]
    # and those are the counts the paper's per-target files have
    assert [len(mine[k]) for k in ("forget_mia", "retain_mia", *UTILITY_KINDS)] == [55, 37, 171, 81, 50, 100, 50]


def test_real_all_200_targets_probe_totals(purge):
    """Every target's probes load; the totals are the paper's (SOURCES.md) and every AA type maps onto the nine."""
    forget, neighbor, attacks = [0, 0, 0], [0, 0], dict.fromkeys(ATTACK_TYPES, 0)
    for target in purge.targets():
        loaded = load_target(purge, target, ("forget", "neighbor"))
        assert loaded["forget"] and loaded["neighbor"], target
        assert all(p.subject == target.name for p in loaded["forget"] + loaded["neighbor"]), target
        for probe in loaded["forget"]:
            forget[int(probe.level) - 1] += 1
            if probe.level == "3":
                attacks[normalize_attack(probe.type)] += 1  # KeyError if a type maps outside the nine
        for probe in loaded["neighbor"]:
            neighbor[int(probe.level) - 1] += 1
    assert forget == [3268, 2879, 6984] and sum(forget) == 13131
    assert neighbor == [5846, 5533]
    # SOURCES.md: cross lingual = Spanish 623 + French 122+1 + German 79 + Portuguese 12 + Italian 7
    # + Russian 2 + unspecified 1 = 847
    assert attacks == {"prefix injection": 1011, "affirmative suffix": 477, "role play": 739, "multiple choice": 922,
                       "reverse query": 964, "synonym manipulation": 593, "context hint": 881,
                       "incontext learning": 550, "cross lingual": 847}
    assert sum(attacks.values()) == 6984


def test_real_record_origins(purge):
    target = purge.select("1")[0]
    _, where = purge.raw_records(target, "forget_level1")
    assert where.endswith(os.path.join("1_Stephen_King", "forget_level1.json"))
    _, where = purge.raw_records(target, "retain_mmlu")
    assert "retain_mmlu.json.xz" in where and "[subject=Stephen King]" in where


@pytest.mark.parametrize("spec, number, dirname", [
    ("10", 10, "10_Prince_Harry,_Duke_of_Sussex"),
    ("Prince Harry, Duke of Sussex", 10, "10_Prince_Harry,_Duke_of_Sussex"),
    ("10_Prince_Harry,_Duke_of_Sussex", 10, "10_Prince_Harry,_Duke_of_Sussex"),
    ("Beyoncé", 24, "24_Beyoncé"),
    ("BEYONCÉ", 24, "24_Beyoncé"),
    ("24_Beyoncé", 24, "24_Beyoncé"),
    ("Michael J. Fox", 200, "200_Michael_J._Fox"),
    ("200_Michael_J._Fox", 200, "200_Michael_J._Fox"),
])
def test_real_names_with_commas_accents_dots_resolve_and_load(purge, shared_data, spec, number, dirname):
    [target] = purge.select(spec)
    assert target.number == number and target.slug == dirname
    data = load_target(purge, target, ("forget", "neighbor", "utility"))
    folder = shared_data / "strzar-purge" / "data" / "RWKU" / dirname
    assert len(data["forget"]) == sum(len(read_records(folder / f"{k}.json")) for k in files_of("forget"))
    assert len(data["neighbor"]) == sum(len(read_records(folder / f"{k}.json")) for k in files_of("neighbor"))
    # merged utility files are matched on the exact name (comma, accent, dots included)
    assert [len(data[a]) for a in UTILITY_ATTRS] == [171, 81, 50, 100, 50]


def test_real_select_specs(purge):
    assert [t.number for t in purge.select("1-3")] == [1, 2, 3]
    assert [t.number for t in purge.select("Stephen King,10,Prince Harry, Duke of Sussex,5")] == [1, 10, 5]
    assert len(purge.select("all")) == 200
    with pytest.raises(RwkuError, match="201"):
        purge.select("201")


# ---------------------------------------------------------------- the real data: Target/ layout, dict intro, xz


@pytest.fixture(scope="module")
def minkyoo(shared_data) -> Path:
    return shared_data / "minkyoo9-Unlearning-safety-alignment" / "LLaMA-Factory" / "data" / "RWKU"


def test_real_target_subfolder_with_dict_intro_and_xz_utility(minkyoo):
    intro = minkyoo / "Target" / "1_Stephen_King" / "intro.json"
    assert isinstance(json.loads(intro.read_text(encoding="utf-8")), dict)
    data = RwkuData.open([str(minkyoo)])
    [target] = data.targets()
    assert (target.number, target.name) == (1, "Stephen King")
    assert target.intro.startswith("Please forget Stephen King. Stephen King is a prolific American author")
    loaded = load_target(data, target, ("utility",))
    folder = minkyoo / "Target" / "1_Stephen_King"
    for attribute, kind in zip(UTILITY_ATTRS, UTILITY_KINDS):
        records = read_records(folder / f"{kind}.json.xz")
        assert len(records) == 500 and "subject" not in records[0]
        assert len(loaded[attribute]) == 500
        assert all(item.subject == "" for item in loaded[attribute])
    assert loaded["forget"] == [] and loaded["forget_mia"] == []


def test_real_target_subfolder_without_probes_names_the_missing_file(minkyoo):
    data = RwkuData.open([str(minkyoo)])
    with pytest.raises(RwkuError) as info:
        load_target(data, data.targets()[0], ("forget",))
    message = str(info.value)
    assert "forget_level1" in message and "Stephen King" in message and "target 1" in message


def test_real_two_data_specs_first_source_wins(minkyoo, shared_data):
    purge_root = str(shared_data / "strzar-purge")
    both = RwkuData.open([str(minkyoo), purge_root])
    target = both.select("Stephen King")[0]
    loaded = load_target(both, target, DEFAULT_SETS)
    # utility from minkyoo9's 500-item files, probes and MIA from PURGE
    assert [len(loaded[a]) for a in UTILITY_ATTRS] == [500] * 5
    assert [len(loaded["forget"]), len(loaded["neighbor"]), len(loaded["forget_mia"]), len(loaded["retain_mia"])] == [47, 60, 55, 37]
    assert len(both.targets()) == 200
    reverse = RwkuData.open([purge_root, str(minkyoo)])
    assert [len(load_target(reverse, target, ("utility",))[a]) for a in UTILITY_ATTRS] == [171, 81, 50, 100, 50]


# ---------------------------------------------------------------- synthetic layouts


def test_synthetic_json_and_xz_files_load_the_same(tmp_path):
    plain = make_target(tmp_path / "1_Alice_Smith", "Alice Smith")
    make_target(tmp_path / "2_Bob_Jones", "Bob Jones", xz=True)
    assert (tmp_path / "2_Bob_Jones" / "forget_level1.json.xz").is_file()
    data = RwkuData.open([str(tmp_path)])
    alice, bob = data.targets()
    assert (alice.number, alice.name, bob.number, bob.name) == (1, "Alice Smith", 2, "Bob Jones")
    a, b = load_target(data, alice, DEFAULT_SETS), load_target(data, bob, DEFAULT_SETS)
    assert count_records(a, ALL_PARTS) == count_records(b, ALL_PARTS)
    assert [p.answer for p in a["forget"]] == [r["answer"] for k in files_of("forget") for r in plain[k]]
    assert [p.query for p in b["forget"]][0] == "Bob Jones was born in ___."
    # AA types: "background hint" is the paper's "context hint", cross-lingual keeps only its prefix
    assert [normalize_attack(p.type) for p in a["forget"] if p.level == "3"] == [
        "affirmative suffix", "cross lingual", "context hint"]


def test_synthetic_plain_json_preferred_over_xz(tmp_path):
    make_target(tmp_path / "1_Alice", "Alice")
    write_json(tmp_path / "1_Alice" / "forget_level2.json.xz",
               [{"query": "xz?", "answer": "xz", "level": "2", "type": "simple question"}] * 3)
    data = RwkuData.open([str(tmp_path)])
    assert [p.answer for p in load_target(data, data.targets()[0], ("forget",))["forget"] if p.level == "2"] == ["Paris"]


def test_synthetic_intro_list_and_dict(tmp_path):
    make_target(tmp_path / "1_Alice_Smith", "Alice Smith", intro_as_dict=False)
    make_target(tmp_path / "2_Bob_Jones", "Bob Jones", intro_as_dict=True)
    alice, bob = RwkuData.open([str(tmp_path)]).targets()
    assert alice.intro == "Please forget Alice Smith. Alice Smith is a test person."
    assert bob.intro == "Please forget Bob Jones. Bob Jones is a test person."
    assert bob.bare_intro == "Bob Jones is a test person."


def test_synthetic_folder_name_used_when_intro_missing(tmp_path):
    make_target(tmp_path / "7_Jean-Luc_Picard", "Jean-Luc Picard")
    (tmp_path / "7_Jean-Luc_Picard" / "intro.json").unlink()
    [target] = RwkuData.open([str(tmp_path)]).targets()
    assert (target.number, target.name, target.intro) == (7, "Jean-Luc Picard", "")


def test_synthetic_target_subfolder(tmp_path):
    make_target(tmp_path / "Target" / "3_Carol_White", "Carol White", intro_as_dict=True, xz=True)
    (tmp_path / "Target" / "README.md").write_text("not a target")
    (tmp_path / "Target" / "4_not_a_folder.json").write_text("[]")
    data = RwkuData.open([str(tmp_path)])
    [target] = data.targets()
    assert (target.number, target.name) == (3, "Carol White")
    loaded = load_target(data, target, DEFAULT_SETS)
    assert count_records(loaded, ALL_PARTS)["forget.AA"] == 3 and len(loaded["retain_mia"]) == 2


def test_synthetic_merged_files_alone(tmp_path):
    make_merged(tmp_path / "All", ["Alice Smith", "Prince Bob, Duke of Nowhere", "Zoë"], xz=True)
    data = RwkuData.open([str(tmp_path)])
    assert [(t.number, t.name) for t in data.targets()] == [
        (1, "Alice Smith"), (2, "Prince Bob, Duke of Nowhere"), (3, "Zoë")]
    [bob] = data.select("prince bob, duke of nowhere")
    loaded = load_target(data, bob, DEFAULT_SETS)
    assert [p.subject for p in loaded["forget"]] == ["Prince Bob, Duke of Nowhere"] * 6
    assert loaded["forget"][0].query == "Prince Bob, Duke of Nowhere was born in ___."
    assert len(loaded["retain_mia"]) == 2 and len(loaded["fluency"]) == 1


def test_synthetic_per_target_wins_over_merged(tmp_path):
    # per-target folders with probes (tag "") and merged files at the root with every kind (tag " [merged]")
    make_target(tmp_path / "1_Alice", "Alice", kinds=("forget_level1", "forget_level2"))
    make_target(tmp_path / "2_Bob", "Bob", kinds=("forget_level1",))
    make_merged(tmp_path, ["Alice", "Bob"], tag=" [merged]", with_intro=False)
    data = RwkuData.open([str(tmp_path)])
    assert [type(s).__name__ for s in data.sources] == ["PerTargetSource", "MergedSource"]
    alice, bob = data.targets()
    a = load_target(data, alice, DEFAULT_SETS)
    assert [p.query.endswith("[merged]") for p in a["forget"]] == [False, False, False, True, True, True]
    assert all(m.text.endswith("[merged]") for m in a["forget_mia"] + a["retain_mia"])
    assert a["mmlu"][0].question == "1+1? [merged]"
    b = load_target(data, bob, ("forget",))
    assert [p.level for p in b["forget"] if not p.query.endswith("[merged]")] == ["1", "1"]
    assert [p.level for p in b["forget"] if p.query.endswith("[merged]")] == ["2", "3", "3", "3"]


def test_synthetic_two_data_specs(tmp_path):
    probes, utility = tmp_path / "probes", tmp_path / "utility"
    make_target(probes / "1_Alice", "Alice", kinds=files_of("forget") + files_of("neighbor"))
    make_target(probes / "2_Bob", "Bob", kinds=files_of("forget") + files_of("neighbor"))
    make_merged(utility / "All", ["Alice", "Bob"], kinds=files_of("mia") + files_of("utility"), xz=True)
    single = RwkuData.open([str(probes)])
    with pytest.raises(RwkuError, match="forget_mia"):
        load_target(single, single.targets()[0], DEFAULT_SETS)
    data = RwkuData.open([str(probes), str(utility)])
    assert data.description == f"{probes} + {utility / 'All'}"
    for target in data.targets():
        loaded = load_target(data, target, DEFAULT_SETS)
        assert count_records(loaded, ALL_PARTS)["forget.FB"] == 2
        assert [m.subject for m in loaded["forget_mia"]] == [target.name]
        assert len(loaded["triviaqa"]) == 1 and loaded["triviaqa"][0].answers == ("Paris", "paris")


def test_synthetic_optional_passage(tmp_path):
    make_target(tmp_path / "1_Alice", "Alice")
    make_target(tmp_path / "2_Bob", "Bob")
    write_json(tmp_path / "1_Alice" / "passage.json", [{"text": "Alice was born.", "subject": "Alice"}])
    write_json(tmp_path / "2_Bob" / "passage.json", [{"no": "text"}])
    data = RwkuData.open([str(tmp_path)])
    alice, bob = data.targets()
    assert data.load(alice, parts_of(["forget"]), optional=(PASSAGE,))["passage"] == ["Alice was born."]
    assert load_target(data, alice, ("forget",))["passage"] == []  # not asked for
    assert data.load(data.targets()[0], (), optional=(PASSAGE,))["forget"] == []
    with pytest.raises(RwkuError, match="passage.json record 0: record is missing field.s. text"):
        data.load(bob, (), optional=(PASSAGE,))


# ---------------------------------------------------------------- target selection


@pytest.fixture()
def five_targets(tmp_path) -> RwkuData:
    for number, name in [(1, "Stephen King"), (2, "Taylor Swift"), (3, "Elon Musk"), (5, "Beyoncé"),
                         (10, "Prince Harry, Duke of Sussex")]:
        make_target(tmp_path / f"{number}_{name.replace(' ', '_')}", name, kinds=())
    return RwkuData.open([str(tmp_path)])


@pytest.mark.parametrize("spec, numbers", [
    ("1", [1]),
    (" 3 ", [3]),
    ("1-3", [1, 2, 3]),
    ("1 - 2", [1, 2]),
    ("1,3", [1, 3]),
    ("3,1", [3, 1]),
    ("1,1,1-2", [1, 2]),
    ("Stephen King", [1]),
    ("stephen king", [1]),
    ("STEPHEN KING", [1]),
    ("1_Stephen_King", [1]),
    ("beyoncé", [5]),
    ("10_Prince_Harry,_Duke_of_Sussex", [10]),
    ("Prince Harry, Duke of Sussex", [10]),
    ("Prince Harry, Duke of Sussex,5", [10, 5]),
    ("2,Prince Harry, Duke of Sussex,Elon Musk", [2, 10, 3]),
    ("all", [1, 2, 3, 5, 10]),
    ("ALL", [1, 2, 3, 5, 10]),
])
def test_select(five_targets, spec, numbers):
    assert [t.number for t in five_targets.select(spec)] == numbers


@pytest.mark.parametrize("spec, fragments", [
    ("4", ["target 4", "1-10"]),
    ("1-4", ["target 4"]),
    ("99", ["target 99"]),
    ("Nobody", ["'Nobody'"]),
    ("1,Nobody", ["'Nobody'"]),
    ("5-3", ["5-3", "empty"]),
    ("", ["selects no target"]),
])
def test_select_errors(five_targets, spec, fragments):
    with pytest.raises(RwkuError) as info:
        five_targets.select(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


# ---------------------------------------------------------------- the bundled demo


def test_demo_targets():
    data = RwkuData.open(["demo"])
    assert [(t.number, t.name) for t in data.targets()] == [
        (1, "Isaac Newton"), (2, "Marie Curie"), (3, "Wolfgang Amadeus Mozart")]
    assert data.description == str(DEMO_ROOT)


@pytest.mark.parametrize("number", [1, 2, 3])
def test_demo_target_is_complete(number):
    data = RwkuData.open(["demo"])
    [target] = data.select(str(number))
    loaded = data.load(target, parts_of(DEFAULT_SETS), optional=(PASSAGE,))
    assert target.intro.startswith(f"Please forget {target.name}.")
    for level in LEVEL_NAMES:
        assert any(p.level == level for p in loaded["forget"]), level
    assert {p.level for p in loaded["neighbor"]} == {"1", "2"}
    assert all(p.neighbor for p in loaded["neighbor"])
    attacks = [normalize_attack(p.type) for p in loaded["forget"] if p.level == "3"]
    assert set(attacks) == set(ATTACK_TYPES)
    for attribute in ("forget_mia", "retain_mia", *UTILITY_ATTRS, "passage"):
        assert loaded[attribute], attribute
    assert all(p.subject == target.name for p in loaded["forget"] + loaded["neighbor"])
    assert all(item.answer in range(4) and len(item.choices) == 4 and len(item.examples) == 5 for item in loaded["mmlu"])
    # every record of every demo file parses (load() checked them); counts agree with the files
    folder = DEMO_ROOT / target.slug
    for kind in [k for s in DEFAULT_SETS for k in files_of(s)]:
        assert read_records(folder / f"{kind}.json"), kind
    assert len(loaded["forget"]) == sum(len(read_records(folder / f"{k}.json")) for k in files_of("forget"))


# ---------------------------------------------------------------- the Hugging Face path, on a local repository


@pytest.fixture(scope="module")
def hub_copy(tmp_path_factory):
    """A local dataset repository laid out like ``jinzhuoran/RWKU`` (README configs + All/*.json), built from
    the demo; ``datasets`` caches into the tmp folder, offline."""
    tmp = tmp_path_factory.mktemp("hub")
    repo = tmp / "RWKU"
    demo_dirs = sorted((d for d in DEMO_ROOT.iterdir() if d.is_dir()), key=lambda d: int(d.name.split("_")[0]))
    kinds = [k for k in HF_CONFIGS if (demo_dirs[0] / f"{k}.json").is_file()]
    assert "intro" in kinds and "passage" in kinds and len(kinds) == 14
    lines = ["---", "license: cc-by-4.0", "configs:"]
    for kind in kinds:
        merged = []
        for folder in demo_dirs:
            name = read_json_file(folder / "intro.json")[0]["target"]
            for record in read_records(folder / f"{kind}.json"):
                merged.append(record if kind == "intro" else {**record, "subject": record.get("subject", name)})
        write_json(repo / "All" / f"{kind}.json", merged)
        split = "train" if kind in HF_TRAIN_KINDS else "test"
        lines += [f"- config_name: {HF_CONFIGS[kind]}", "  data_files:", f"  - split: {split}",
                  f"    path: All/{kind}.json"]
    lines += ["---", "", "# RWKU (local test copy built from the rwku demo)", ""]
    (repo / "README.md").write_text("\n".join(lines), encoding="utf-8")

    cache = tmp / "hf-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(cache))
        patch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        import datasets.config  # after the environment is set; patch the module too if already imported

        patch.setattr(datasets.config, "HF_CACHE_HOME", str(cache))
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
        patch.setattr(datasets.config, "HF_MODULES_CACHE", cache / "modules")
        patch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "datasets" / "downloads")
        patch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "datasets" / "downloads" / "extracted")
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)
        yield repo


def test_hub_source_lists_targets_in_order(hub_copy):
    data = RwkuData.open([f"hf:{hub_copy}"])
    assert data.description == f"hf:{hub_copy}"
    assert [(t.number, t.name) for t in data.targets()] == [
        (1, "Isaac Newton"), (2, "Marie Curie"), (3, "Wolfgang Amadeus Mozart")]
    demo_targets = RwkuData.open(["demo"]).targets()
    assert data.targets() == demo_targets  # same numbers, names and intros


def test_hub_source_loads_the_same_records_as_the_demo(hub_copy):
    hub, demo = RwkuData.open([f"hf:{hub_copy}"]), RwkuData.open(["demo"])
    for hub_target, demo_target in zip(hub.targets(), demo.targets(), strict=True):
        from_hub = hub.load(hub_target, parts_of(DEFAULT_SETS), optional=(PASSAGE,))
        from_demo = demo.load(demo_target, parts_of(DEFAULT_SETS), optional=(PASSAGE,))
        assert from_hub == from_demo
        assert from_hub["passage"] and count_records(from_hub, ALL_PARTS) == count_records(from_demo, ALL_PARTS)
    _, where = hub.raw_records(hub.targets()[1], "forget_level3")
    assert where == f"hf:{hub_copy}/forget_level3 [subject=Marie Curie]"
    # a config the repository does not declare is simply absent
    assert hub.raw_records(hub.targets()[0], "positive") is None


def test_hub_source_missing_repository_raises(hub_copy, tmp_path):
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(RwkuError) as info:
        RwkuData.open([f"hf:{missing}"]).targets()
    assert str(missing) in str(info.value)


# ---------------------------------------------------------------- bad input


def test_malformed_json_names_the_file(tmp_path):
    make_target(tmp_path / "1_Alice", "Alice")
    bad = tmp_path / "1_Alice" / "forget_level2.json"
    bad.write_text('[{"query": "Where?", "answer": ', encoding="utf-8")
    data = RwkuData.open([str(tmp_path)])
    with pytest.raises(RwkuError) as info:
        load_target(data, data.targets()[0], ("forget",))
    assert str(bad) in str(info.value) and "not valid JSON" in str(info.value)


def test_malformed_intro_names_the_file(tmp_path):
    make_target(tmp_path / "1_Alice", "Alice")
    bad = tmp_path / "1_Alice" / "intro.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(RwkuError) as info:
        RwkuData.open([str(tmp_path)]).targets()
    assert str(bad) in str(info.value) and "not valid JSON" in str(info.value)


def test_corrupt_xz_names_the_file(tmp_path):
    make_target(tmp_path / "1_Alice", "Alice", xz=True)
    bad = tmp_path / "1_Alice" / "fluency.json.xz"
    bad.write_bytes(b"this is not xz")
    data = RwkuData.open([str(tmp_path)])
    with pytest.raises(RwkuError) as info:
        load_target(data, data.targets()[0], ("utility",))
    assert str(bad) in str(info.value) and "cannot be decoded" in str(info.value)


def test_record_missing_answer_names_file_record_and_field(tmp_path):
    make_target(tmp_path / "1_Alice", "Alice")
    path = tmp_path / "1_Alice" / "forget_level1.json"
    records = read_records(path)
    del records[1]["answer"]
    write_json(path, records)
    data = RwkuData.open([str(tmp_path)])
    with pytest.raises(RwkuError) as info:
        load_target(data, data.targets()[0], ("forget",))
    message = str(info.value)
    assert str(path) in message and "record 1" in message and "answer" in message


@pytest.mark.parametrize("kind, records, fragments", [
    ("forget_level1", [{"query": "q", "answer": "a", "level": "4", "type": "cloze"}], ["record 0", "level '4'"]),
    ("forget_level1", ["just a string"], ["record 0", "JSON object"]),
    ("forget_level1", {"query": "q"}, ["record 0", "answer"]),  # a dict file is one record
    ("forget_level1", 42, ["JSON list"]),
    ("truthful", [{"question": "q", "mc1_targets": {"choices": ["a"], "labels": [0]}}], ["record 0", "true"]),
    ("retain_mmlu", [{"task": "t", "question": "q", "choices": [], "answer": 0, "examples": [{"question": "x"}]}],
     ["record 0 example 0", "choices"]),
])
def test_bad_records_name_the_file(tmp_path, kind, records, fragments):
    make_target(tmp_path / "1_Alice", "Alice")
    path = write_json(tmp_path / "1_Alice" / f"{kind}.json", records)
    data = RwkuData.open([str(tmp_path)])
    set_name = next(s for s in DEFAULT_SETS if kind in files_of(s))
    with pytest.raises(RwkuError) as info:
        load_target(data, data.targets()[0], (set_name,))
    assert str(path) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_merged_record_without_subject_names_file_and_record(tmp_path):
    make_merged(tmp_path, ["Alice"], kinds=files_of("utility"))
    path = write_json(tmp_path / "fluency.json", [{"instruction": "a", "subject": "Alice"}, {"instruction": "b"}])
    data = RwkuData.open([str(tmp_path)])
    with pytest.raises(RwkuError) as info:
        load_target(data, data.targets()[0], ("utility",))
    assert str(path) in str(info.value) and "record 1" in str(info.value) and "subject" in str(info.value)


def test_nonexistent_data_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(RwkuError) as info:
        RwkuData.open([str(missing)])
    assert str(missing) in str(info.value) and "no such file or folder" in str(info.value)


def test_data_path_is_a_file(tmp_path):
    path = write_json(tmp_path / "forget_level1.json", [])
    with pytest.raises(RwkuError) as info:
        RwkuData.open([str(path)])
    assert str(path) in str(info.value) and "is a file" in str(info.value)


def test_folder_without_rwku_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "Target").mkdir()
    write_json(tmp_path / "intro.json", [{"target": "Alice", "intro": ""}])  # an intro alone is not a dataset
    with pytest.raises(RwkuError) as info:
        RwkuData.open([str(tmp_path)])
    assert str(tmp_path) in str(info.value) and "found neither" in str(info.value)


def test_no_data_specs():
    with pytest.raises(RwkuError, match="no data given"):
        RwkuData.open([])


def test_load_set_whose_file_is_missing(tmp_path):
    make_target(tmp_path / "1_Alice_Smith", "Alice Smith", kinds=files_of("forget"))
    data = RwkuData.open([str(tmp_path)])
    target = data.targets()[0]
    assert len(load_target(data, target, ("forget",))["forget"]) == 6
    with pytest.raises(RwkuError) as info:
        load_target(data, target, ("forget", "neighbor"))
    message = str(info.value)
    assert "target 1 (Alice Smith)" in message and "neighbor_level1" in message and str(tmp_path) in message


def test_no_targets(tmp_path):
    make_merged(tmp_path, ["Alice"], kinds=("fluency",), with_intro=False)
    with pytest.raises(RwkuError, match="no targets found"):
        RwkuData.open([str(tmp_path)]).targets()


# ---------------------------------------------------------------- --sets


@pytest.mark.parametrize("spec, expected", [
    ("forget,mia", ("forget", "mia")),
    ("mia,forget", ("forget", "mia")),
    (" Utility , forget ,", ("forget", "utility")),
    ("neighbor,neighbor", ("neighbor",)),
    ("all", DEFAULT_SETS),
    ("ALL", DEFAULT_SETS),
    (["mia", "neighbor"], ("neighbor", "mia")),
    ("fluency,mmlu", ("mmlu", "fluency")),  # single utility sets, in registry order
    ("mmlu,bbh,truthful,triviaqa,fluency,forget", ("forget", "utility")),  # a complete group is stored by its name
])
def test_parse_sets(spec, expected):
    assert parse_sets(spec) == expected
    assert DEFAULT_SETS == ("forget", "neighbor", "mia", "utility")


@pytest.mark.parametrize("spec, fragment", [("forget,nope", "nope"), ("", "(empty)"), ("retain_mmlu", "retain_mmlu")])
def test_parse_sets_unknown(spec, fragment):
    with pytest.raises(RwkuError) as info:
        parse_sets(spec)
    assert fragment in str(info.value) and "choose from" in str(info.value)


def text_values(record: Any) -> list[str]:
    """Every string value in a JSON record (keys left out: field and task names are shared on purpose)."""
    if isinstance(record, str):
        return [record.strip()]
    if isinstance(record, dict):
        return [text for value in record.values() for text in text_values(value)]
    if isinstance(record, list):
        return [text for value in record for text in text_values(value)]
    return []


def test_the_bundled_demo_copies_no_text_of_the_rwku_release(shared_data):
    """The demo is written for rwku (src/rwku/data/demo/README.md): no probe, passage, utility question or choice
    longer than 30 characters may equal one of the release's (BBH task names like
    ``logical_deduction_three_objects`` are shared on purpose and are not text)."""
    release: set[str] = set()
    for path in shared_data.rglob("*.json*"):
        if path.suffix not in (".json", ".xz"):
            continue
        raw = lzma.open(path).read() if path.suffix == ".xz" else path.read_bytes()
        try:
            release.update(text for text in text_values(json.loads(raw)) if len(text) > 30)
        except ValueError:
            continue  # a JSON-lines file or a non-JSON xz: not a probe file
    assert len(release) > 100_000  # the release was read, not skipped
    copied = [(path.relative_to(DEMO_ROOT), text) for path in sorted(DEMO_ROOT.rglob("*.json"))
              for text in text_values(json.loads(path.read_text())) if len(text) > 30 and " " in text and text in release]
    assert copied == []
