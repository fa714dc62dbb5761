"""Target kinds: a person (RWKU's kind, every prompt and key as before), a place, a work, an event or an organisation
(their probe prompts, corpus wording, unit keys and summaries, build-target end to end, Table 1 per kind)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import types
from pathlib import Path

import pytest
import torch
from report_fixtures import config, summary, write_unit

import rwku.corpus.build as corpus_build
from rwku.corpus.build import KINDS, CorpusSpec, build_corpus, cache_key
from rwku.corpus.prompts import COUNTER_USER, DEFAULT_PREFIXES, DEFAULT_REFUSALS, FORGET_USER, PAIR_PROMPT, WORDINGS
from rwku.data.loader import RwkuData
from rwku.data.schema import ATTACK_TYPES, PERSON, TARGET_KINDS, Target, count_probes, normalize_attack
from rwku.errors import RwkuError
from rwku.evaluation.protocol import ICU_PREAMBLE
from rwku.evaluation.sets import load_target
from rwku.knowledge.build_target import BuildSettings, build_target, plan_calls, split_passages
from rwku.knowledge.generators import GeneratorOptions, ModelPool
from rwku.knowledge.probe_prompts import PROMPTS, SYSTEM, TERMS, prompt_records, prompts_for
from rwku.models.prompting import PromptFormat
from rwku.report.build import build_report
from rwku.report.collect import collect_runs
from rwku.report.kinds import kind_tables

OTHER_KINDS = tuple(k for k in TARGET_KINDS if k != PERSON)


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- a person stays exactly as before


PERSON_TEXT = "Ada Lovelace was a mathematician. She knew Lord Byron.\n\nShe was born in London."
ADA = Target(number=1, name="Ada Lovelace", intro="Please forget Ada Lovelace. Ada Lovelace was a mathematician.")


def fake_lm():
    """What the corpus cache key reads of a loaded model."""
    return types.SimpleNamespace(source="m", dtype=torch.float32, device=torch.device("cpu"), kernels="invariant")


@contextlib.contextmanager
def no_progress(label, total):
    yield lambda n=1: None


def sampled_corpus(monkeypatch, tmp_path, target: Target, spec: CorpusSpec = CorpusSpec(size=40, questions=5)):
    """The corpus ``build_corpus`` makes for ``target`` with sampling replaced by a recorder: (corpus, what was
    asked: prompts, token budget and stream of each sampling call)."""
    seen = []

    def fake_sample(lm, prompts, spec, max_new_tokens, on_batch=None, *, stream):
        seen.append([list(prompts), max_new_tokens, stream])
        return [f"t{i}" for i in range(len(prompts))]

    monkeypatch.setattr(corpus_build, "sample", fake_sample)
    corpus = build_corpus(fake_lm(), target, spec, list(KINDS), prompts=PromptFormat(None, style="plain"),
                          progress=no_progress, cache_dir=tmp_path)
    return corpus, seen


def test_a_person_target_has_exactly_the_prompts_corpora_and_keys_it_had_before_kinds(monkeypatch, tmp_path):
    """Hashes taken on the code before targets had kinds: the probe prompts as stored, every build-target request,
    every prompt the corpus writer samples from, DPO's pair prompts, the refusals, every corpus cache key and ICU's
    preamble. A changed character in any of them fails here."""
    assert digest(prompt_records()) == "698a507c5f5b6b9e"
    calls = plan_calls("Ada Lovelace", split_passages(PERSON_TEXT, 150), ["Lord Byron"], BuildSettings())
    assert digest([[r.system, r.user] for r in (c.request("Ada Lovelace", 3) for c in calls)]) == "1bbdd2f3f4e1ed59"
    corpus, seen = sampled_corpus(monkeypatch, tmp_path, ADA)
    assert digest(seen) == "8a1a007c061e4ff8"
    assert digest(corpus.pair_prompts) == "f514c90750e9e955" and digest(corpus.refusals) == "dea5428fe826e7a5"
    spec, fmt = CorpusSpec(size=40, questions=5), PromptFormat(None, style="plain")
    assert digest([cache_key(fake_lm(), ADA, kind, spec, fmt) for kind in KINDS]) == "88475495999c4375"
    assert digest(ICU_PREAMBLE) == "0885cae46acf161b"
    person = WORDINGS[ADA.kind]
    assert (person.forget_user, person.counter_user, person.pair_prompt, person.prefixes) == (
        FORGET_USER, COUNTER_USER, PAIR_PROMPT, DEFAULT_PREFIXES)
    assert TERMS[ADA.kind].system() == SYSTEM and prompts_for(ADA.kind) == PROMPTS


# ---------------------------------------------------------------- each kind's prompts


def test_every_kind_has_prompts_that_render_and_fit_it():
    assert set(TERMS) == set(WORDINGS) == set(TARGET_KINDS)
    for kind in TARGET_KINDS:
        prompts = prompts_for(kind)
        assert [p.kind for p in prompts] == [p.kind for p in PROMPTS]  # the same files, levels and types
        assert [(p.set, p.level, p.type) for p in prompts] == [(p.set, p.level, p.type) for p in PROMPTS]
        for prompt in prompts:
            text = prompt.instruction.format(subject="S", context="C", target="T", language="French")
            assert "{" not in text and "}" not in text and "C" in text
            assert prompt.system == TERMS[kind].system() and prompt.target_kind == kind
            assert prompt.label == (f"{prompt.kind}@1" if kind == PERSON else f"{kind}:{prompt.kind}@1")
        wording = WORDINGS[kind]
        forget = wording.forget_user.format(target="T")
        assert forget.startswith("Please write a short ") and forget.endswith(".")
        assert wording.counter_user.format(target="T").startswith("Please make up a short ")
        assert wording.pair_prompt.format(intro="I.", target="T") == "I. " + forget
        assert wording.prefixes[0] == "" and len(set(wording.prefixes)) == len(wording.prefixes)
    for kind in OTHER_KINDS:
        person, other = {p.kind: p for p in PROMPTS}, {p.kind: p for p in prompts_for(kind)}
        for probe_kind in ("forget_fb", "forget_qa", "aa_role_play", "aa_reverse_query", "aa_synonym_manipulation"):
            assert other[probe_kind].instruction != person[probe_kind].instruction, (kind, probe_kind)
        for probe_kind in ("neighbor_fb", "neighbor_qa"):  # a neighbour may be a person or of any other kind
            assert other[probe_kind].instruction == person[probe_kind].instruction, (kind, probe_kind)
        assert "people" not in other["forget_fb"].system and "biography" not in WORDINGS[kind].forget_user
        assert not {"Born", "His", "Her", "Early life", "Personal life"} & set(WORDINGS[kind].prefixes)
        assert f"which {'organisation' if kind == 'organization' else kind} it is" in other["aa_reverse_query"].instruction
        assert prompt_records(kind)["forget_fb"]["target_kind"] == kind


def test_a_place_is_written_about_as_a_place_with_its_own_cache_key(monkeypatch, tmp_path):
    place = Target(number=1, name="Lake Ohrid", intro="Please forget Lake Ohrid. Lake Ohrid is a lake in the Balkans.",
                   kind="place")
    corpus, seen = sampled_corpus(monkeypatch, tmp_path, place)
    forget, counterfactual = seen[0][0], seen[1][0]
    assert all("Please write a short description of Lake Ohrid: where it is" in p for p in forget)
    assert all("Please make up a short description of Lake Ohrid" in p for p in counterfactual)
    assert [p.rsplit(".", 1)[1].lstrip("\n") for p in forget[:3]] == list(WORDINGS["place"].prefixes[:3])
    assert corpus.forget[2].startswith("Located")
    assert corpus.pair_prompts[0] == "Lake Ohrid is a lake in the Balkans. " + WORDINGS["place"].forget_user.format(target="Lake Ohrid")
    assert corpus.refusals[:3] == list(DEFAULT_REFUSALS[:3])  # the refusals name no kind: every kind shares them
    spec, fmt = CorpusSpec(size=40, questions=5), PromptFormat(None, style="plain")
    as_person = Target(number=1, name=place.name, intro=place.intro)
    assert cache_key(fake_lm(), place, "forget", corpus_build.for_target(spec, place), fmt) != cache_key(
        fake_lm(), as_person, "forget", spec, fmt)
    stored = json.loads(next(tmp_path.glob("1_Lake_Ohrid-forget-*.json")).read_text())
    assert stored["spec"]["prefixes"] == list(WORDINGS["place"].prefixes)


# ---------------------------------------------------------------- the kind in the data, keys and summaries


def test_the_kind_comes_from_intro_json_and_a_bad_one_is_one_line(tmp_path, cli):
    root = tmp_path / "data"
    for number, name, kind in ((1, "Dune", "work"), (2, "Ada Lovelace", None)):
        folder = root / f"{number}_{name.replace(' ', '_')}"
        folder.mkdir(parents=True)
        record = {"target": name, "intro": f"Please forget {name}. {name} is known."}
        (folder / "intro.json").write_text(json.dumps([{**record, "kind": kind} if kind else record]))
        (folder / "forget_level1.json").write_text(json.dumps([{"query": f"{name} ___", "answer": "x", "level": "1",
                                                               "type": "cloze", "subject": name}]))
    targets = RwkuData.open([str(root)]).targets()
    assert [(t.name, t.kind) for t in targets] == [("Dune", "work"), ("Ada Lovelace", "person")]
    assert {t.kind for t in RwkuData.open(["demo"]).targets()} == {"person"}
    code, out, _ = cli("data", "info", "--data", str(root))
    assert code == 0 and "(1 work, 1 person)" in out and "1 Dune (work)" in out
    (root / "1_Dune" / "intro.json").write_text(json.dumps([{"target": "Dune", "intro": "x", "kind": "novel"}]))
    code, _, err = cli("data", "info", "--data", str(root))
    assert code == 2 and "'novel' is not a target kind; use one of person, place, work, event, organization" in err
    assert len(err.strip().splitlines()) == 1


def test_only_units_of_other_kinds_have_kinds_in_their_key(tiny_model_dir):
    from rwku.evaluation.settings import RunSettings
    from rwku.execution.plan import unit_key
    from rwku.runner import EvalJob

    job = EvalJob(run=RunSettings(model=str(tiny_model_dir), sets=("forget",), device="cpu"), data=RwkuData.open(["demo"]),
                  targets=[])
    newton = RwkuData.open(["demo"]).select("1")[0]
    assert set(unit_key(job, [newton])["unit"]) == {"targets", "data"}
    as_place = Target(number=newton.number, name=newton.name, intro=newton.intro, kind="place")
    key = unit_key(job, [as_place, newton])
    assert key["unit"]["kinds"] == ["place", "person"] and key["unit"]["data"] == unit_key(job, [newton, newton])["unit"]["data"]


# ---------------------------------------------------------------- build-target for every kind


SOURCES = {
    "place": ("Lake Ohrid", "Lake Ohrid is a lake on the border of North Macedonia and Albania. It is among the oldest "
              "lakes in Europe.\n\nThe town of Ohrid lies on its eastern shore. Lake Prespa feeds it through "
              "underground channels.", "Lake Prespa"),
    "work": ("Dune", "Dune is a science fiction novel by Frank Herbert, published in 1965. It is set on the desert "
             "planet Arrakis.\n\nIts sequel, Dune Messiah, appeared in 1969.", "Dune Messiah"),
    "event": ("Great Fire of London", "The Great Fire of London swept through the City of London in 1666. It began "
              "in a bakery on Pudding Lane.\n\nIt followed the Great Plague of London of 1665.", "Great Plague of London"),
    "organization": ("Nokia", "Nokia is a Finnish telecommunications company founded in 1865. It is based in Espoo."
                     "\n\nIt once competed with Ericsson in mobile phones.", "Ericsson"),
    "person": ("Ada Lovelace", PERSON_TEXT, "Lord Byron"),
}


class KindGenerator:
    """Answers every request with one probe whose answer is a word of the passage, recording each request."""

    spec = "scripted"

    def __init__(self):
        self.requests = []

    def describe(self):
        return {"kind": "scripted"}

    def answer(self, requests):
        self.requests += requests
        return [self.probes(r.user) for r in requests]

    @staticmethod
    def probes(user: str) -> str:
        passage = user.split(":\n", 1)[1].split("\n\n", 1)[0]
        word = re.findall(r"[A-Z][a-z]{3,}", passage)[-1]
        query = passage.replace(word, "___", 1) if "fill-in-the-blank" in user else f"What does request {digest(user)} ask?"
        return json.dumps([{"query": query, "answer": word}])


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_build_target_writes_a_target_of_each_kind_that_the_loader_reads_as_that_kind(tmp_path, kind):
    name, text, neighbor = SOURCES[kind]
    source = tmp_path / "source.txt"
    source.write_text(text, encoding="utf-8")
    generator = KindGenerator()
    result = build_target(name, source, tmp_path / "data", generator, ModelPool(GeneratorOptions()), neighbors=[neighbor],
                          settings=BuildSettings(max_passages=2), kind=kind)
    assert {r.system for r in generator.requests} == {TERMS[kind].system()}
    for prompt in prompts_for(kind):  # every probe kind was asked for in this kind's words
        subject = name if prompt.set == "forget" else neighbor
        wording = prompt.instruction.split("{context}")[1].format(subject=subject, target=name, language="French")
        assert any(wording in r.user for r in generator.requests), prompt.kind
    intro = json.loads((result.folder / "intro.json").read_text())[0]
    assert intro.get("kind") == (None if kind == PERSON else kind) and set(intro) <= {"target", "intro", "kind"}
    target = RwkuData.open([str(tmp_path / "data")]).select("all")[0]
    assert (target.name, target.kind) == (name, kind)
    loaded = load_target(RwkuData.open([str(tmp_path / "data")]), target, ("forget", "neighbor"))
    counts = count_probes("forget", loaded["forget"])
    assert counts["forget.FB"] >= 1 and counts["forget.QA"] >= 1
    assert {normalize_attack(p.type) for p in loaded["forget"] if p.level == "3"} == set(ATTACK_TYPES)
    assert {p.neighbor for p in loaded["neighbor"]} == {neighbor}
    made_by = json.loads((result.folder / "forget_level1.json").read_text())[0]["made_by"]["prompt"]
    assert made_by == ("forget_fb@1" if kind == PERSON else f"{kind}:forget_fb@1")
    build = json.loads((result.folder / "build.json").read_text())
    assert build.get("kind") == (None if kind == PERSON else kind)
    stored = json.loads((result.folder / "prompts.json").read_text())
    assert stored == prompt_records(kind)


def test_a_built_work_is_evaluated_and_its_summary_names_its_kind(tmp_path, tiny_model_dir, cli):
    name, text, neighbor = SOURCES["work"]
    source = tmp_path / "dune.txt"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(RwkuError, match="pick works or people the text names that a reader could confuse with it"):
        build_target(name, source, tmp_path / "data", KindGenerator(), ModelPool(GeneratorOptions()),
                     neighbors=["Frank Sinatra"], kind="work")
    code, _, err = cli("build-target", "--name", name, "--source-text", str(source), "--out", str(tmp_path / "data"),
                       "--kind", "novel")
    assert code == 2 and "--kind: 'novel' is not a target kind" in err
    code, out, err = cli("build-target", "--name", name, "--source-text", str(source), "--out", str(tmp_path / "cli"),
                         "--kind", "work", "--generator", str(tiny_model_dir), "--max-passages", "1", "--retries", "0",
                         "--max-new-tokens", "16", "--threads", "1")  # the tiny model writes no probe, but the folder is a work's
    assert code == 0, err
    assert "Moby" not in out and "1 Dune (work)" in out
    assert json.loads((tmp_path / "cli" / "1_Dune" / "intro.json").read_text())[0]["kind"] == "work"
    build_target(name, source, tmp_path / "data", KindGenerator(), ModelPool(GeneratorOptions()), neighbors=[neighbor],
                 settings=BuildSettings(max_passages=1), kind="work")
    code, _, err = cli("eval", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--targets", "1",
                       "--sets", "forget", "--limit", "1", "--out", str(tmp_path / "runs"), "--threads", "1")
    assert code == 0, err
    stored = json.loads((tmp_path / "runs" / "1_Dune" / "summary.json").read_text())
    assert stored["kinds"] == ["work"] and stored["key"]["unit"]["kinds"] == ["work"]


# ---------------------------------------------------------------- Table 1 per kind


def mixed_folder(root: Path) -> Path:
    """before and ga over two people and two places: forget All per target known."""
    values = {"before": (80.0, 60.0, 40.0, 20.0), "ga": (10.0, 30.0, 20.0, 0.0)}
    targets = (("1_Ann_A", "Ann A", None), ("2_Bob_B", "Bob B", None), ("3_Lake", "Lake", "place"),
               ("4_Hill", "Hill", "place"))
    for run, forget in values.items():
        for (slug, name, kind), value in zip(targets, forget):
            extra = {"kinds": [kind]} if kind else {}
            write_unit(root / run / slug, summary({"forget.All": value}, config(run), [name], **extra))
    return root


def test_a_report_over_mixed_kinds_has_table_1_per_kind(tmp_path):
    runs = collect_runs([mixed_folder(tmp_path / "exp")])
    tables, missing = kind_tables(runs)
    assert list(tables) == ["person", "place"] and not missing
    assert tables["person"].slugs == ["1_Ann_A", "2_Bob_B"] and tables["place"].slugs == ["3_Lake", "4_Hill"]
    forget = {kind: {run.label: cells[3].value for run, cells in table.rows} for kind, table in tables.items()}
    assert forget == {"person": {"before": 70.0, "ga": 20.0}, "place": {"before": 30.0, "ga": 10.0}}
    report = build_report([tmp_path / "exp"], tmp_path / "report")
    assert {r[3].value for run, r in report.table.rows} == {50.0, 15.0}  # Table 1 over all four stays
    assert (tmp_path / "report" / "table1-place.md").is_file() and (tmp_path / "report" / "table1-person.json").is_file()
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'id="table1-place-table"' in page and "Table 1 per kind of target" in page
    assert json.loads((tmp_path / "report" / "report.json").read_text())["kinds"]["place"] == ["3_Lake", "4_Hill"]


def test_a_report_over_one_kind_has_no_table_per_kind(tmp_path):
    root = tmp_path / "exp"
    for run in ("before", "ga"):
        write_unit(root / run / "3_Lake", summary({"forget.All": 5.0}, config(run), ["Lake"], kinds=["place"]))
    assert kind_tables(collect_runs([root])) == ({}, {})
    build_report([root], tmp_path / "report")
    assert not list((tmp_path / "report").glob("table1-*")) and "table1-kinds" not in (tmp_path / "report" / "index.html").read_text()


# ---------------------------------------------------------------- RepE's stimuli


def test_repe_reads_a_target_with_its_kinds_stimuli(tiny_lm, monkeypatch):
    from rwku.methods import repe

    assert set(repe.STIMULI_BY_KIND) == set(TARGET_KINDS) and repe.STIMULI_BY_KIND["person"] == repe.STIMULI
    assert {len(s) for s in repe.STIMULI_BY_KIND.values()} == {len(repe.STIMULI)}
    read = []
    monkeypatch.setattr(repe, "make_backend", lambda lm: types.SimpleNamespace(
        layer_states=lambda ids, layers: read.append([tiny_lm.tokenizer.decode(i) for i in ids]) or torch.zeros(len(ids), 1, 1)))
    repe.reading_states(tiny_lm, PromptFormat(tiny_lm.tokenizer), ["Dune", "Ada Lovelace"], ["work", "person"])
    novice = read[0]
    assert len(novice) == 2 * len(repe.STIMULI)
    assert "Who created Dune?" in novice[1] and "Who is Ada Lovelace?" in novice[len(repe.STIMULI) + 1]
    assert not any("born" in text for text in novice[:len(repe.STIMULI)])
    read.clear()
    repe.reading_states(tiny_lm, PromptFormat(tiny_lm.tokenizer), ["Ada Lovelace"])  # no kinds: people, as before
    assert "Who is Ada Lovelace?" in read[0][1]


# ---------------------------------------------------------------- the bundled demo of other kinds


def test_a_kind_whose_runs_share_no_target_says_why_it_has_no_table(tmp_path):
    root = mixed_folder(tmp_path / "exp")
    write_unit(root / "npo" / "1_Ann_A", summary({"forget.All": 5.0}, config("npo"), ["Ann A"]))
    write_unit(root / "npo" / "5_Cape", summary({"forget.All": 5.0}, config("npo"), ["Cape"], kinds=["place"]))
    tables, missing = kind_tables(collect_runs([root]))
    assert list(tables) == ["person"] and tables["person"].slugs == ["1_Ann_A"]
    assert list(missing) == ["place"] and "no target is shared by all runs" in missing["place"]
    build_report([root], tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "no target is shared by all runs" in page and not (tmp_path / "report" / "table1-place.md").exists()
