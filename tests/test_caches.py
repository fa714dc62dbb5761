"""Every cache rwku reads heals: an entry cut short (a full disk, a killed copy) is reported in one warning line,
moved aside and built again, for each kind (the converted default model, planted models, corpora, the retain
corpus); ``rwku cache`` lists, checks and removes entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rwku.caches import CACHE_KINDS, CorruptEntry, check_model_folder, check_safetensors, read_cached
from rwku.corpus.build import CorpusSpec, build_corpus
from rwku.corpus.retain import build_retain
from rwku.data import RwkuData
from rwku.evaluation.context import no_progress
from rwku.models.prompting import PromptFormat


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to ``keep`` of its bytes, as a full disk or a killed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def moved_aside(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.corrupt-*"))


def one_warning(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_read_cached_absent_whole_and_broken(tmp_path, capsys):
    path = tmp_path / "entry.json"
    assert read_cached(path, json.loads, what="x") is None  # absent: build it
    path.write_text('{"texts": ["a"]}')
    assert read_cached(path, lambda p: json.loads(p.read_text()), what="x") == {"texts": ["a"]}
    truncate(path)
    assert read_cached(path, lambda p: json.loads(p.read_text()), what="test entry") is None
    one_warning(capsys.readouterr().err, "test entry", str(path), "is corrupt", "moved aside", "building it again")
    assert not path.exists() and len(moved_aside(tmp_path, "entry.json")) == 1


def test_a_bug_in_the_loader_is_not_taken_for_corruption(tmp_path):
    path = tmp_path / "entry.json"
    path.write_text("{}")

    def broken(_):
        raise RuntimeError("a bug, not a broken file")

    with pytest.raises(RuntimeError):
        read_cached(path, broken, what="x")
    assert path.exists()


def test_safetensors_cut_anywhere_is_caught(tiny_model_dir, tmp_path):
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    check_safetensors(tiny_model_dir / "model.safetensors")
    for keep in (4, 100, len(weights) - 1):
        cut = tmp_path / f"cut{keep}.safetensors"
        cut.write_bytes(weights[:keep])
        with pytest.raises(CorruptEntry):
            check_safetensors(cut)


@pytest.mark.parametrize("kind", ["forget", "questions"])
def test_a_truncated_corpus_is_rebuilt(tiny_lm, tmp_path, capsys, kind):
    """The issue's case: a forget corpus cut short failed its unit forever with JSONDecodeError."""
    target = RwkuData.open(["demo"]).select("1")[0]
    spec = CorpusSpec(size=2, questions=2, max_new_tokens=5, question_tokens=4)
    build = lambda: build_corpus(tiny_lm, target, spec, [kind], prompts=PromptFormat(tiny_lm.tokenizer),  # noqa: E731
                                 progress=no_progress, cache_dir=tmp_path)
    first = getattr(build(), kind)
    [path] = list(tmp_path.glob(f"*-{kind}-*.json"))
    truncate(path)
    again = getattr(build(), kind)
    one_warning(capsys.readouterr().err, f"cached {kind} corpus", path.name, "moved aside")
    assert again == first and json.loads(path.read_text())["texts"] == first
    assert len(moved_aside(tmp_path, path.name)) == 1


def test_a_truncated_retain_corpus_is_rebuilt(tiny_lm, tmp_path, capsys):
    spec = CorpusSpec(size=2, max_new_tokens=4)
    build = lambda: build_retain(tiny_lm, spec, prompts=PromptFormat(tiny_lm.tokenizer), progress=no_progress,  # noqa: E731
                                 excluded=(), cache_dir=tmp_path)
    first = build()
    [path] = list(tmp_path.glob("retain-*.json"))
    path.write_text('{"kind": "retain", "texts": ["whole", 3')  # cut inside the list
    assert build() == first
    one_warning(capsys.readouterr().err, "cached retain corpus", "moved aside")


def test_a_truncated_converted_model_is_converted_again(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The default model's conversion (GGUF -> safetensors) replaced by the tiny model: the cache logic is the same."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rwku.models.loading as loading

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path))
    conversions = []

    def load_tiny(path, dtype):
        conversions.append(path)
        return AutoTokenizer.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    monkeypatch.setattr(loading, "smollm2_gguf_path", lambda: tiny_model_dir / "model.gguf")
    monkeypatch.setattr(loading, "load_gguf", load_tiny)
    folder = loading.converted_default_model()
    assert loading.converted_default_model() == folder and len(conversions) == 1  # reused
    for broken in ("model.safetensors", "config.json", "tokenizer.json"):
        truncate(folder / broken)
        assert loading.converted_default_model() == folder
        one_warning(capsys.readouterr().err, "converted model", broken, "moved aside")
        check_model_folder(folder)
    assert len(conversions) == 4 and len(moved_aside(tmp_path / "models", folder.name)) == 3


def test_a_truncated_planted_model_is_planted_again(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from rwku.knowledge.planting import PlantRecipe, cached_plant, plant

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    data = RwkuData.open(["demo"])
    targets = data.select("1-2")
    recipe = PlantRecipe(lr=1e-2, epochs=1, batch_size=8, max_length=32)
    folder = cached_plant(str(tiny_model_dir), data, targets, targets[1], recipe, "tiny-demo")
    weights = (folder / "model.safetensors").read_bytes()
    truncate(folder / "model.safetensors", keep=0.9)
    assert cached_plant(str(tiny_model_dir), data, targets, targets[1], recipe, "tiny-demo") == folder
    one_warning(capsys.readouterr().err, "planted model", "model.safetensors", "cut short", "moved aside")
    assert (folder / "model.safetensors").read_bytes() == weights  # the same model, planted again
    # rwku plant --out: a folder whose recipe matches but whose weights are cut short is not reused
    out = tmp_path / "planted"
    plant(str(tiny_model_dir), data, targets, out, recipe, control=targets[1], sets=())
    truncate(out / "model.safetensors")
    result = plant(str(tiny_model_dir), data, targets, out, recipe, control=targets[1], sets=())
    assert not result.reused and (out / "model.safetensors").read_bytes() == weights
    one_warning(capsys.readouterr().err, "planted model", str(out))


def test_every_kind_is_listed_and_checked(tmp_path):
    kinds = {kind.name for kind in CACHE_KINDS.values()}
    assert kinds == {"model", "planted", "corpus", "retain"}
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "1_Isaac_Newton-forget-abc.json").write_text('{"target": "Isaac Newton", "kind": "forget", "texts": ["a"]}')
    (corpora / "retain-abc.json").write_text('{"kind": "retain", "texts": ["b"]}')
    (corpora / ".x.json.corrupt-1").write_text("{")
    assert [p.name for p in CACHE_KINDS["corpus"].entries(tmp_path)] == ["1_Isaac_Newton-forget-abc.json"]
    assert [p.name for p in CACHE_KINDS["retain"].entries(tmp_path)] == ["retain-abc.json"]
    assert CACHE_KINDS["corpus"].describe(corpora / "1_Isaac_Newton-forget-abc.json") == "Isaac Newton · forget"


def test_cli_cache_lists_checks_and_removes(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("RWKU_CACHE", str(tmp_path))
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    whole = corpora / "1_Isaac_Newton-forget-0123abcd.json"
    whole.write_text('{"target": "Isaac Newton", "kind": "forget", "model": "tiny", "texts": ["a", "b"]}')
    cut = corpora / "2_Marie_Curie-forget-4567cdef.json"
    cut.write_text('{"target": "Marie Curie", "kind": "forget", "texts": ["a"')
    code, out, _ = cli("cache")
    text = " ".join(out.split())
    assert code == 0 and whole.name in text and cut.name in text and "Isaac Newton · forget · tiny" in text
    assert "2 entries" in text and str(tmp_path) in text
    code, out, _ = cli("cache", "--check")
    text = " ".join(out.split())
    assert code == 0 and "1 broken entry moved aside" in text and "corrupt:" in text
    assert whole.exists() and not cut.exists() and len(moved_aside(corpora, cut.name)) == 1
    code, out, _ = cli("cache", "--remove", "corrupt")
    assert code == 0 and "removed 1 entry" in out and not moved_aside(corpora, cut.name) and whole.exists()
    code, _, err = cli("cache", "--remove", "no-such-entry")
    assert code == 2 and "--remove no-such-entry: no such cache entry" in " ".join(err.split())
    code, out, _ = cli("cache", "--remove", whole.name)
    assert code == 0 and not whole.exists()
    code, out, _ = cli("cache")
    assert code == 0 and "0 entries" in out


def test_a_removal_cut_short_is_listed_as_moved_aside(tmp_path):
    from rwku.caches import list_entries, remove_entry

    folder = tmp_path / "models" / "tiny-demo-0123"
    folder.mkdir(parents=True)
    (folder / "recipe.json").write_text("{}")
    half = tmp_path / "models" / ".tiny-demo-4567.removing-abc123"
    half.mkdir()
    entries = {e.path.name: e for e in list_entries(tmp_path)}
    assert entries[half.name].kind == "corrupt" and entries[half.name].holds == "moved aside: tiny-demo-4567"
    assert entries[folder.name].kind == "planted"
    assert remove_entry(folder) == 2 and not folder.exists() and not list(folder.parent.glob(".tiny-demo-0123*"))
