"""Memorization (paper Fig. 1): EM and NLL against a plain forward pass, windowing, sources, bad input, the unseen
corpus, the ``rwku memorization`` command on the tiny model, and its section in ``rwku report``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from report_fixtures import make_folder, write_memorization

from rwku.errors import RwkuError
from rwku.evaluation.context import EvalContext
from rwku.knowledge.memorization import (
    RWKU,
    MemorizationJob,
    Source,
    Text,
    mean_scores,
    parse_source_option,
    read_source_file,
    rwku_source,
    score_source,
    summarize,
    unseen_records,
    unseen_source,
    window_tokens,
)
from rwku.models.prompting import PromptFormat
from rwku.models.scoring import score_tokens

TEXTS = [
    "Stephen King is an American author. Please briefly answer the following question.",
    "Isaac Newton was an English physicist and mathematician. Who wrote the book? The author wrote it.",
    "Stephen King is an American author of horror novels.",  # shares a long prefix with the first
    "The answer is True.",
]


def plain_forward(model, ids: list[int]) -> tuple[list[bool], list[float]]:
    """Greedy-correctness and log-prob of tokens 1..n-1 from one unbatched, unpadded forward pass."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(ids[1:])
    return (logits[:-1].argmax(-1) == targets).tolist(), logprobs.gather(-1, targets[:, None]).squeeze(-1).tolist()


def context(lm, batch_size: int = 2) -> EvalContext:
    return EvalContext(lm=lm, prompts=PromptFormat(lm.tokenizer, style="plain"), batch_size=batch_size)


def test_greedy_flag_matches_a_plain_forward_pass(tiny_lm):
    """Batched, padded and prefix-shared scoring marks the same argmax tokens as a plain forward pass."""
    rows = [window_tokens(tiny_lm.tokenizer, t, 64) for t in TEXTS]
    scored = score_tokens(tiny_lm.model, rows, [len(r) - 1 for r in rows], pad_id=tiny_lm.tokenizer.pad_token_id,
                          batch_size=3, greedy=True)
    for row, scores in zip(rows, scored):
        greedy, logprobs = plain_forward(tiny_lm.model, row)
        assert scores.greedy == greedy
        assert scores.logprobs == pytest.approx(logprobs, abs=1e-4)
    assert score_tokens(tiny_lm.model, rows[:1], [len(rows[0]) - 1], pad_id=0, batch_size=1)[0].greedy is None


def test_em_and_nll_by_hand(tiny_lm):
    source = Source("mine", [Text("mine", f"mine:{i}", t) for i, t in enumerate(TEXTS)], "test")
    rows = score_source(context(tiny_lm), source, window=12, min_tokens=2)
    for text, row in zip(TEXTS, rows):
        ids = tiny_lm.tokenizer(text)["input_ids"][:12]
        greedy, logprobs = plain_forward(tiny_lm.model, ids)
        assert row["tokens"] == len(ids) and len(greedy) == len(ids) - 1
        assert row["em"] == pytest.approx(sum(greedy) / len(greedy))
        assert row["nll"] == pytest.approx(-sum(logprobs) / len(logprobs), abs=1e-5)
    means = mean_scores(rows)
    assert means["count"] == 4 and means["em"] == pytest.approx(sum(r["em"] for r in rows) / 4)


def test_the_models_own_greedy_continuation_is_fully_memorized(tiny_lm):
    """A text made of the model's own greedy continuation has EM 1 by construction."""
    ids = tiny_lm.tokenizer("Stephen King")["input_ids"]
    prompt = len(ids)
    with torch.no_grad():
        for _ in range(10):
            ids.append(int(tiny_lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    greedy_text = Source("g", [Text("g", "g:0", "")], "test")
    ctx = context(tiny_lm)
    scores = ctx.score("x", [ids], [len(ids) - 1], greedy=True)[0]
    assert all(scores.greedy[prompt - 1:]) and len(scores.greedy[prompt - 1:]) == 10  # every continuation token
    assert score_source(ctx, greedy_text, 8, min_tokens=2)[0]["em"] is None  # an empty text has nothing to score


def test_windowing_cuts_to_the_first_tokens_and_skips_texts_too_short(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    long_text = " ".join(TEXTS * 5)
    full = tokenizer(long_text)["input_ids"]
    assert len(full) > 40 and window_tokens(tokenizer, long_text, 40) == full[:40]
    one_token = next(t for t in ("a", "S", "T") if len(tokenizer(t)["input_ids"]) == 1)
    short = TEXTS[3]
    n_short = len(tokenizer(short)["input_ids"])
    assert 2 < n_short < 40
    source = Source("s", [Text("s", "s:1", long_text), Text("s", "s:2", one_token), Text("s", "s:3", short)], "test")
    rows = score_source(context(tiny_lm), source, window=40)  # by default only full windows are scored
    assert rows[0]["tokens"] == 40 and rows[0]["em"] is not None
    assert rows[1]["tokens"] == 1 and rows[1]["em"] is None and rows[1]["nll"] is None
    assert rows[2]["tokens"] == n_short and rows[2]["em"] is None
    assert mean_scores(rows) == {"em": rows[0]["em"], "nll": rows[0]["nll"], "count": 1, "skipped": 2}
    lowered = score_source(context(tiny_lm), source, window=40, min_tokens=2)
    assert lowered[2]["em"] is not None and lowered[1]["em"] is None  # one token: nothing to score, whatever the bar
    assert lowered[0] == rows[0]
    wider = score_source(context(tiny_lm), source, window=64)[0]
    assert wider["tokens"] == 64 and wider["nll"] != rows[0]["nll"]  # the window decides what is scored


def test_sources_from_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first text\n\n  second text  \n")
    (tmp_path / "b.jsonl").write_text('{"text": "one", "url": "x"}\n\n{"text": "two"}\n{"text": "three"}\n')
    txt = read_source_file("web", tmp_path / "a.txt")
    assert [t.text for t in txt.texts] == ["first text", "second text"] and [t.id for t in txt.texts] == ["web:1", "web:3"]
    jsonl = read_source_file("c4", tmp_path / "b.jsonl", limit=2)
    assert [t.text for t in jsonl.texts] == ["one", "two"] and jsonl.texts[1].id == "c4:3" and jsonl.origin.endswith("b.jsonl")
    assert parse_source_option("wiki = pages.jsonl") == ("wiki", Path("pages.jsonl"))


@pytest.mark.parametrize("name, content, spec_name, fragment", [
    ("x.csv", "a,b\n", "web", "unknown format '.csv'"),
    ("x.jsonl", '{"text": "ok"}\n{"text": \n', "web", "line 2: not JSON"),
    ("x.jsonl", '{"body": "no text field"}\n', "web", "line 1: expected an object with a string 'text' field"),
    ("x.jsonl", '["a list"]\n', "web", "line 1: expected an object"),
    ("x.txt", "\n  \n", "web", "holds no text"),
])
def test_bad_source_files_are_one_line_errors(tmp_path, name, content, spec_name, fragment):
    (tmp_path / name).write_text(content)
    with pytest.raises(RwkuError) as error:
        read_source_file(spec_name, tmp_path / name)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_bad_source_options_are_one_line_errors(tmp_path):
    for spec, fragment in (("pages.jsonl", "expected NAME=FILE"), ("=a.txt", "both parts"), ("rwku=a.txt", "built-in source"),
                           ("my web=a.txt", "has spaces")):
        with pytest.raises(RwkuError, match=fragment):
            parse_source_option(spec)
    with pytest.raises(RwkuError, match="no such file"):
        read_source_file("web", tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RwkuError, match="not UTF-8"):
        read_source_file("web", tmp_path / "bad.txt")
    twice = [Source("web", [Text("web", "web:1", "a")], "x")] * 2
    with pytest.raises(RwkuError, match="given twice"):
        MemorizationJob(models=["smollm2-135m"], sources=twice).check()
    with pytest.raises(RwkuError, match="no text to score"):
        MemorizationJob(models=["smollm2-135m"], sources=[]).check()
    with pytest.raises(RwkuError, match="names a model twice"):
        MemorizationJob(models=["a", "a"], sources=twice[:1]).check()
    with pytest.raises(RwkuError, match="--min-tokens 200: give 2"):
        MemorizationJob(models=["smollm2-135m"], sources=twice[:1], window=128, min_tokens=200).check()


def test_unseen_corpus_is_large_unique_and_within_bounds():
    records = unseen_records()
    assert len(records) >= 100
    assert len({r["id"] for r in records}) == len({r["title"] for r in records}) == len({r["text"] for r in records}) == len(records)
    for record in records:
        words = len(record["text"].split())
        assert 80 <= words <= 200, (record["id"], words)
        assert record["kind"] and record["title"] and "\n" not in record["text"]
    assert len(unseen_source(limit=5).texts) == 5 and unseen_source().texts[0].source == "unseen"
    assert len({r["kind"] for r in records}) >= 5  # people, places, events, works ...


def test_rwku_source_reads_the_targets_passages(shared_data):
    from rwku.data.loader import RwkuData

    data = RwkuData.open([str(shared_data / "strzar-purge")])
    targets = data.select("1-2")
    source = rwku_source(data, targets, limit=3)
    assert len(source.texts) == 6 and source.texts[0].target == targets[0].slug and source.texts[3].target == targets[1].slug
    assert source.texts[0].text.startswith("Stephen Edwin King")
    rows = [{"source": RWKU, "target": t.target, "em": 0.5 if t.target == targets[0].slug else 0.1, "nll": 1.0}
            for t in source.texts]
    summary = summarize(rows, [source], targets)
    assert summary["targets"][targets[0].slug]["em"] == 0.5 and summary["targets"][targets[1].slug]["count"] == 3
    assert summary["sources"][RWKU]["em"] == pytest.approx(0.3)


def test_cli_writes_results_figure_and_tables(tiny_model_dir, tiny_plain_model_dir, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "web.txt").write_text("Isaac Newton was an English physicist.\nThe answer is True. So the answer is False.\n")
    out = tmp_path / "memo"
    code, stdout, err = cli("memorization", "--model", str(tiny_model_dir), "--model", str(tiny_plain_model_dir),
                            "--data", "demo", "--source", f"web={tmp_path / 'web.txt'}", "--limit", "3", "--window", "32",
                            "--min-tokens", "4", "--out", str(out), "--threads", "1", "--device", "cpu")
    assert code == 0, err
    payload = json.loads((out / "memorization.json").read_text())
    assert payload["window"] == 32 and payload["min_tokens"] == 4 and set(payload["sources"]) == {"rwku", "unseen", "web"}
    assert list(payload["models"]) == [str(tiny_model_dir), str(tiny_plain_model_dir)]
    entry = payload["models"][str(tiny_model_dir)]
    assert entry["sources"]["rwku"]["count"] == 6 and entry["sources"]["unseen"]["count"] == 3  # demo: 2 passages × 3
    assert entry["sources"]["web"]["count"] == 2 and 0 <= entry["sources"]["unseen"]["em"] <= 1
    assert set(entry["targets"]) == {"1_Isaac_Newton", "2_Marie_Curie", "3_Wolfgang_Amadeus_Mozart"}
    assert entry["targets"]["1_Isaac_Newton"]["count"] == 2 and entry["seconds"] >= 0 and entry["kernels"] == "invariant"
    rows = [json.loads(line) for line in (out / "texts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * (6 + 3 + 2) and all(r["tokens"] <= 32 for r in rows)
    newton = [r for r in rows if r["target"] == "1_Isaac_Newton" and r["model"] == str(tiny_model_dir)]
    assert len(newton) == 2 and entry["targets"]["1_Isaac_Newton"]["em"] == pytest.approx(sum(r["em"] for r in newton) / 2)
    assert (out / "fig1_memorization.png").stat().st_size > 5000 and (out / "fig1_memorization.svg").is_file()
    assert not list(out.glob(".*.tmp"))
    assert "unseen" in stdout and "Isaac Newton" in stdout and "memorization.json" in stdout
    # by default only full windows count: the two short lines are left out, and the command says so
    code, stdout, err = cli("memorization", "--model", str(tiny_model_dir), "--no-unseen", "--source", f"web={tmp_path / 'web.txt'}",
                            "--window", "32", "--out", str(tmp_path / "short"), "--threads", "1", "--device", "cpu")
    assert code == 0, err
    web = json.loads((tmp_path / "short" / "memorization.json").read_text())["models"][str(tiny_model_dir)]["sources"]["web"]
    assert web == {"em": None, "nll": None, "count": 0, "skipped": 2}
    assert "web: 2 text(s) shorter than 32 tokens left out" in " ".join(stdout.split())


def test_cli_bad_input_is_one_line(tiny_model_dir, tmp_path, cli):
    (tmp_path / "bad.jsonl").write_text("not json\n")
    for args, fragment in (
        (["--source", f"web={tmp_path / 'missing.txt'}"], "no such file"),
        (["--source", f"web={tmp_path / 'bad.jsonl'}"], "line 1: not JSON"),
        (["--source", f"web={tmp_path / 'x.parquet'}"], "unknown format"),
        (["--no-unseen"], "no text to score"),
        (["--data", "demo", "--targets", "9"], "target 9 is not in"),
    ):
        code, _, err = cli("memorization", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"), *args)
        assert code == 2 and "Traceback" not in err and fragment in " ".join(err.split()), (args, err)
        assert len(err.strip().splitlines()) <= 2  # one line (rich may wrap it)
    assert not (tmp_path / "o").exists()


def test_report_includes_memorization_when_present(tmp_path):
    from rwku.report.build import build_report

    runs = make_folder(tmp_path / "exp")
    memo = write_memorization(tmp_path / "memo")
    report = build_report([runs, memo], tmp_path / "report")
    assert "fig1_memorization" in report.figures and (tmp_path / "report" / "figures" / "fig1_memorization.png").is_file()
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'id="memorization"' in page and 'href="#memorization"' in page and 'id="knowledge-table"' in page
    knowledge = page.split('id="knowledge-table"')[1]
    assert knowledge.index("1_Ann_A") < knowledge.index("2_Bob_B")  # best known first
    per_target = page.split('id="per-target-table"')[1].split("</table>")[0]
    assert "knowledge EM" in per_target and "0.700" in per_target and 'class="sortable"' in page
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "knowledge.csv").read_text())))
    assert {(r["kind"], r["name"]) for r in rows} == {("source", "rwku"), ("source", "unseen"), ("target", "1_Ann_A"),
                                                      ("target", "2_Bob_B")}
    assert json.loads((tmp_path / "report" / "report.json").read_text())["memorization"] == [str(memo.resolve())]
    # inside a run folder it is found too; without it the page has no such section
    write_memorization(runs / "memorization")
    assert "fig1_memorization" in build_report([runs], tmp_path / "report2").figures
    plain = build_report([make_folder(tmp_path / "exp3")], tmp_path / "report3")
    page = (tmp_path / "report3" / "index.html").read_text()
    assert "fig1_memorization" not in plain.figures and 'id="memorization"' not in page and page.count("<script") == 2


def test_report_of_memorization_alone(tmp_path, cli):
    memo = write_memorization(tmp_path / "memo")
    code, stdout, err = cli("report", str(memo), "--out", str(tmp_path / "report"))
    assert code == 0, err
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'id="memorization"' in page and 'id="table1"' not in page and "fig1_memorization" in stdout
    (memo / "memorization.json").write_text("{broken")
    code, _, err = cli("report", str(memo), "--out", str(tmp_path / "report"))
    assert code == 2 and "unreadable" in err


def test_scatter_draws_one_panel_per_model():
    from rwku.report.figures import memorization_scatter, source_colors

    panel = {"title": "m", "points": {"rwku": [(0.5, 0.9), (1.0, 0.7)], "unseen": [(4.0, 0.1)]},
             "means": {"rwku": {"em": 0.8, "nll": 0.75, "count": 2}, "unseen": {"em": 0.1, "nll": 4.0, "count": 1}}}
    fig = memorization_scatter([panel, {**panel, "title": "n"}])
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == ["m", "n"]
    assert memorization_scatter([{"title": "m", "points": {}, "means": {"rwku": {"em": None, "nll": None, "count": 0}}}]) is None
    colors = source_colors(["c4", "rwku", "unseen", "wiki"])
    assert colors["rwku"] == "#d62728" and len(set(colors.values())) == 4


def test_cli_verbmem_beside_exact_memorization(tiny_model_dir, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "memo"
    code, stdout, err = cli("memorization", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1", "--no-unseen",
                            "--limit", "2", "--window", "32", "--verbmem", "--out", str(out), "--threads", "1", "--device", "cpu")
    assert code == 0, err
    payload = json.loads((out / "memorization.json").read_text())
    assert payload["verbmem"]["prompt_tokens"] == 32 and payload["verbmem"]["new_tokens"] == 128
    entry = payload["models"][str(tiny_model_dir)]
    rows = [json.loads(line) for line in (out / "texts.jsonl").read_text().splitlines()]
    scored = [r["verbmem_f1"] for r in rows if r["verbmem_f1"] is not None]
    assert len(scored) == 2 and entry["sources"]["rwku"]["verbmem"]["count"] == 2  # both demo passages have 100+ words
    assert entry["targets"]["1_Isaac_Newton"]["verbmem"]["f1"] == pytest.approx(sum(scored) / 2)
    assert "VerbMem F1" in stdout
