"""rwku build-target: probes for a new target, from a source text, by a generator (a scripted one whose answers the
test fixes, the tiny model, and a loopback OpenAI-compatible chat server), then evaluated by rwku eval."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rwku.data.loader import RwkuData
from rwku.data.schema import ATTACK_TYPES, count_probes, normalize_attack
from rwku.errors import RwkuError
from rwku.evaluation.sets import load_target
from rwku.evaluation.settings import RunSettings
from rwku.knowledge.build_target import (
    ANSWER_IN_QUERY,
    DUPLICATE,
    FAILED_CHECK,
    MISSING,
    NO_BLANK,
    NOT_IN_SOURCE,
    SHARED_FILES,
    BuildSettings,
    Unusable,
    build_target,
    parse_answer,
    plan_calls,
    split_passages,
)
from rwku.knowledge.generators import GeneratorOptions, ModelPool, Request, make_generator
from rwku.knowledge.probe_prompts import PROMPTS, PROMPTS_BY_KIND, SYSTEM

NAME = "Ada Lovelace"
SOURCE = """Augusta Ada King, Countess of Lovelace, was an English mathematician and writer. She worked on Charles Babbage's Analytical Engine.

Ada was born in London in 1815. She was the only legitimate child of the poet Lord Byron.

She wrote the first published algorithm, for computing Bernoulli numbers, in 1843."""

#: What the scripted generator answers, per probe kind: one good probe, plus the faults the pipeline must catch.
GOOD = {
    "forget_fb": [{"query": "Ada was born in ___ in 1815.", "answer": "London"},
                  {"query": "Ada was born in ___ in 1815!", "answer": "London"},           # duplicate
                  {"query": "Ada was a famous ___.", "answer": "chess player"},           # not in the source text
                  {"query": "Ada was born in London.", "answer": "London"},              # no blank
                  {"query": "Ada, born in London, was born in ___.", "answer": "London"},  # answer in the query
                  {"query": "Ada wrote the ___ algorithm."}],                            # no answer
    "forget_qa": [{"query": "Who was Ada's father?", "answer": "Lord Byron"}],
    "neighbor_fb": [{"query": "Lord ___ was a poet.", "answer": "Byron"}],
    "neighbor_qa": [{"query": "What was Lord Byron?", "answer": "a poet"}],
}


def scripted_answer(kind: str, passage: str, attempt: int) -> str:
    """The fixed answer to one request: passage 1 of forget_fb fails once then succeeds, passage 2 always fails."""
    if kind == "forget_fb" and (passage == "2" or (passage == "1" and attempt == 0)):
        return '[{"query": "Ada was born in ___", "answer": "London"'  # cut off: not valid JSON
    items = GOOD.get(kind) or [{"query": f"{kind} question about Ada Lovelace, passage {passage}?", "answer": "Lord Byron"}]
    if kind == "aa_multiple_choice":  # the options hold the answer, as they should; a query that is only the answer does not do
        items = [{"query": f"Passage {passage}: was Ada's father Lord Byron or Charles Dickens?", "answer": "Lord Byron"},
                 {"query": "Lord Byron", "answer": "Lord Byron"}]
    return "Here are the probes:\n" + json.dumps(items) + "\nDone."


class ScriptedGenerator:
    """A generator whose answers the test fixes (by probe kind and passage), recording every request it gets."""

    spec = "scripted"

    def __init__(self):
        self.requests: list[Request] = []

    def describe(self):
        return {"kind": "scripted"}

    def answer(self, requests):
        self.requests += requests
        return [scripted_answer(*identify(r), r.user.count("could not be used")) for r in requests]


def identify(request: Request) -> tuple[str, str]:
    """The probe kind and passage number a request was made for (its text starts with that call's request)."""
    for call in plan_calls(NAME, split_passages(SOURCE, 150), ["Lord Byron"], BuildSettings()):
        if request.user.startswith(call.request(NAME, BuildSettings().per_call).user):
            return call.prompt.kind, call.where.split()[-1]
    raise AssertionError(f"unknown request {request.user[:200]}")


@pytest.fixture
def source_file(tmp_path) -> Path:
    path = tmp_path / "ada.txt"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def test_parse_answer_takes_the_json_array_and_refuses_anything_else():
    assert parse_answer('Sure: [{"query": "q", "answer": "a"}] hope it helps') == [{"query": "q", "answer": "a"}]
    assert parse_answer('{"query": "q", "answer": "a"}') == [{"query": "q", "answer": "a"}]
    for text, why in (("no json here", "no JSON"), ('[{"query": "q"', "not valid JSON"), ("[]", "non-empty"),
                      ('["a" "b"]', "not valid JSON")):
        with pytest.raises(Unusable, match=why):
            parse_answer(text)


def test_calls_cover_every_kind_and_neighbors_need_a_passage_naming_them():
    passages = split_passages(SOURCE, 150)
    assert len(passages) == 3
    calls = plan_calls(NAME, passages, ["Lord Byron"], BuildSettings(max_passages=2))
    forget_kinds = [p.kind for p in PROMPTS if p.set == "forget"]
    assert [c.prompt.kind for c in calls if c.prompt.set == "forget"] == [k for k in forget_kinds for _ in range(2)]
    assert [c.where for c in calls if c.prompt.kind == "neighbor_qa"] == ["passage 2"]  # only passage 2 names him
    assert {normalize_attack(c.type) for c in calls if c.prompt.level == "3"} == set(ATTACK_TYPES)
    assert [c.type for c in calls if c.prompt.kind == "aa_cross_lingual"] == ["cross lingual (French)", "cross lingual (Spanish)"]
    with pytest.raises(RwkuError, match="never names 'Charles Dickens'"):
        plan_calls(NAME, passages, ["Charles Dickens"], BuildSettings())


def test_pipeline_end_to_end_with_fixed_answers_then_rwku_eval_runs_on_it(tmp_path, source_file, tiny_model_dir, cli):
    generator = ScriptedGenerator()
    pool = ModelPool(GeneratorOptions(run=RunSettings(device="cpu", dtype="float32", batch_size=4)))
    shared = RwkuData.open(["demo"])
    result = build_target(NAME, source_file, tmp_path / "data", generator, pool, neighbors=["Lord Byron"],
                          check_models=[str(tiny_model_dir)], settings=BuildSettings(max_passages=2, threshold=0.0),
                          shared=(shared, shared.select("1")[0]))
    folder = tmp_path / "data" / "1_Ada_Lovelace"
    assert result.folder == folder and sorted(p.name for p in (tmp_path / "data").iterdir()) == ["1_Ada_Lovelace"]
    # retries: passage 1's first answer was cut off, so it was asked again with the error named; passage 2 never parsed
    retried = [r for r in generator.requests if "could not be used (not valid JSON" in r.user]
    assert len(retried) == 3  # passage 1 once, passage 2 twice (retries=2)
    report = json.loads((folder / "report.json").read_text())
    assert [(f["kind"], f["where"], len(f["attempts"])) for f in report["failures"]] == [("forget_fb", "passage 2", 3)]
    reasons = sorted((d["kind"], d["reason"]) for d in report["dropped"])
    assert reasons == sorted([("forget_fb", DUPLICATE), ("forget_fb", NOT_IN_SOURCE), ("forget_fb", NO_BLANK),
                              ("forget_fb", ANSWER_IN_QUERY), ("forget_fb", MISSING), ("forget_qa", DUPLICATE),
                              ("aa_multiple_choice", ANSWER_IN_QUERY), ("aa_multiple_choice", ANSWER_IN_QUERY)])  # forget_qa: same question from both passages
    row = report["yield"]["forget_fb"]
    assert (row["calls"], row["retried"], row["failed"], row["probes"], row["kept"]) == (2, 2, 1, 6, 1)
    # the official layout, read by the loader as any RWKU target; every probe says who made it
    data = RwkuData.open([str(tmp_path / "data")])
    target = data.select("all")[0]
    assert (target.number, target.name, target.intro) == (1, NAME, f"Please forget {NAME}. Augusta Ada King, Countess of "
                                                                     "Lovelace, was an English mathematician and writer.")
    loaded = load_target(data, target, ("forget", "neighbor", "mia", "utility"))
    counts = count_probes("forget", loaded["forget"])
    assert (counts["forget.FB"], counts["forget.QA"]) == (1, 1)
    assert all(counts[f"forget.AA.{a}"] == 2 for a in ATTACK_TYPES)  # one probe per passage of every attack type
    assert [(p.neighbor, p.answer) for p in loaded["neighbor"]] == [("Lord Byron", "Byron"), ("Lord Byron", "a poet")]
    assert [t.text for t in loaded["forget_mia"]] == split_passages(SOURCE, 150)
    assert len(loaded["retain_mia"]) == len(shared.raw_records(shared.select("1")[0], "retain_mia")[0])
    level1 = json.loads((folder / "forget_level1.json").read_text())
    assert level1[0]["made_by"] == {"generator": "scripted", "prompt": "forget_fb@1"}
    assert set(level1[0]["check"]) == {str(tiny_model_dir)}  # checked; threshold 0 keeps it
    assert "check" not in json.loads((folder / "forget_level3.json").read_text())[0]  # attacks pass unchecked
    prompts = json.loads((folder / "prompts.json").read_text())
    assert set(prompts) == set(PROMPTS_BY_KIND) and prompts["forget_fb"]["version"] == "1"
    build = json.loads((folder / "build.json").read_text())
    assert build["shared"]["files"] == list(SHARED_FILES) and build["yield"] == report["yield"]
    # rwku eval accepts it as it is
    code, out, err = cli("eval", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--targets", "1",
                         "--sets", "forget,neighbor,mia", "--out", str(tmp_path / "runs"), "--threads", "1")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "1_Ada_Lovelace" / "summary.json").read_text())
    assert summary["n_items"]["forget"] == 20 and summary["forget"]["All"] is not None
    # and rwku unlearn: GA* trains on the passages written from the source text
    code, out, err = cli("unlearn", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--targets", "1",
                         "--method", "ga_passage", "--sets", "forget", "--limit", "1", "--set", "epochs=1", "--set", "batch_size=2",
                         "--set", "max_length=32", "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "unlearned"))
    assert code == 0, err
    assert len(list((tmp_path / "unlearned").glob("ga_passage*/1_Ada_Lovelace/summary.json"))) == 1


def test_check_models_keep_only_probes_they_answer(tmp_path, source_file, tiny_model_dir):
    """The tiny model's own answer to a question becomes one probe's reference (kept at threshold 1), another
    probe's reference is a word it does not say (dropped, with its answer and score in the report)."""
    from rwku.data.schema import Probe
    from rwku.evaluation.sets.probes import evaluate_probes

    pool = ModelPool(GeneratorOptions(run=RunSettings(device="cpu", dtype="float32", batch_size=16)))
    question = "Who was Ada's father?"
    _, items = evaluate_probes(pool.context(str(tiny_model_dir)), [Probe(question, "x", "2", "simple question", NAME)], "forget")
    said = items[0]["output"]
    GOOD_QA = [{"query": question, "answer": said}, {"query": "Where was Ada born?", "answer": "London"}]

    class Generator(ScriptedGenerator):
        def answer(self, requests):
            return [json.dumps(GOOD_QA if identify(r)[0] == "forget_qa" else [{"query": "q ___", "answer": "zzz"}])
                    for r in requests]

    build_target(NAME, source_file, tmp_path, Generator(), pool, check_models=[str(tiny_model_dir)],
                 settings=BuildSettings(max_passages=1, threshold=1.0))
    kept = json.loads((tmp_path / "1_Ada_Lovelace" / "forget_level2.json").read_text())
    assert [p["answer"] for p in kept] == [said] and kept[0]["check"][str(tiny_model_dir)]["score"] == 1.0
    dropped = [d for d in json.loads((tmp_path / "1_Ada_Lovelace" / "report.json").read_text())["dropped"]
               if d["reason"] == FAILED_CHECK]
    assert [d["answer"] for d in dropped] == ["London"] and dropped[0]["detail"][str(tiny_model_dir)]["score"] < 1.0


def test_a_local_model_generator_whose_answers_never_parse_writes_no_probe(tmp_path, source_file, tiny_model_dir):
    """The tiny random model writes no JSON: every call is asked again, then recorded as failed with each answer."""
    pool = ModelPool(GeneratorOptions(run=RunSettings(device="cpu", dtype="float32", batch_size=8), max_new_tokens=12))
    generator = make_generator(str(tiny_model_dir), pool)
    result = build_target(NAME, source_file, tmp_path, generator, pool, settings=BuildSettings(max_passages=1, retries=1))
    report = json.loads((result.folder / "report.json").read_text())
    assert len(report["failures"]) == sum(p.set == "forget" for p in PROMPTS)
    assert all(len(f["attempts"]) == 2 and f["attempts"][0]["answer"].startswith('[{"query": "') for f in report["failures"])
    assert all(n == 0 for n in result.counts.values())
    assert json.loads((result.folder / "build.json").read_text())["generator"]["decoding"] == "greedy"


def test_bad_input_is_one_line_and_nothing_is_half_written(tmp_path, source_file, cli):
    (tmp_path / "empty.txt").write_text("  \n")
    out = tmp_path / "data"
    code, _, err = cli("build-target", "--name", NAME, "--source-text", str(tmp_path / "empty.txt"), "--out", str(out))
    assert code == 2 and "the file is empty" in err
    code, _, err = cli("build-target", "--name", NAME, "--source-text", str(tmp_path / "missing.txt"), "--out", str(out))
    assert code == 2 and "no such file" in err
    code, _, err = cli("build-target", "--name", NAME, "--source-text", str(source_file), "--out", str(out),
                       "--generator", str(tmp_path / "no-model"))
    assert code == 2 and "no such file or folder" in err
    code, _, err = cli("build-target", "--name", NAME, "--source-text", str(source_file), "--out", str(out),
                       "--shared-data", "demo", "--shared-target", "9")
    assert code == 2 and "target 9 is not in" in err

    class Broken(ScriptedGenerator):
        def answer(self, requests):
            raise RwkuError("--generator broken: cannot reach it")

    with pytest.raises(RwkuError, match="cannot reach"):
        build_target(NAME, source_file, out, Broken(), ModelPool(GeneratorOptions()))
    assert not out.exists() or list(out.iterdir()) == []
    build_target(NAME, source_file, out, ScriptedGenerator(), ModelPool(GeneratorOptions()), settings=BuildSettings(max_passages=1))
    with pytest.raises(RwkuError, match="exists; remove it"):
        build_target(NAME, source_file, out, ScriptedGenerator(), ModelPool(GeneratorOptions()))
    with pytest.raises(RwkuError, match="already has that number"):
        build_target("Charles Babbage", source_file, out, ScriptedGenerator(), ModelPool(GeneratorOptions()), number=1)
    assert sorted(p.name for p in out.iterdir()) == ["1_Ada_Lovelace"]


# ---------------------------------------------------------------- the OpenAI-compatible endpoint


class ChatServer:
    """A loopback server speaking the OpenAI chat-completions protocol; ``reply(model, messages)`` answers."""

    def __init__(self, reply):
        self.seen: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                status, payload = reply(body["model"], body["messages"])
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def completion(model: str, content: str) -> tuple[int, dict]:
    return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def scripted_reply(model, messages):
    if model != "writer":
        return 404, {"error": {"message": f"model {model} not found", "type": "invalid_request_error"}}
    request = Request(messages[0]["content"], messages[1]["content"])
    return completion(model, scripted_answer(*identify(request), request.user.count("could not be used")))


def test_openai_endpoint_on_loopback_through_the_cli(tmp_path, source_file, monkeypatch, cli):
    pytest.importorskip("openai", reason="the endpoint generator needs the openai package: pip install 'rwku[openai]'")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    server = ChatServer(scripted_reply)
    with server as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        code, out, err = cli("build-target", "--name", NAME, "--source-text", str(source_file), "--out", str(tmp_path / "d"),
                             "--generator", "openai:writer", "--max-passages", "1", "--neighbors", "Lord Byron",
                             "--shared-data", "demo", "--shared-target", "Marie Curie")
        assert code == 0, err
        assert len(json.loads((tmp_path / "d" / "1_Ada_Lovelace" / "retain_mmlu.json").read_text())) > 0
        assert "forget_level1 1" in out and "rwku eval --data" in out
        build = json.loads((tmp_path / "d" / "1_Ada_Lovelace" / "build.json").read_text())
        assert build["generator"]["kind"] == "openai" and build["generator"]["model"] == "writer"
        assert build["shared"]["target"] == "2 Marie Curie"
        code, _, err = cli("build-target", "--name", NAME, "--source-text", str(source_file), "--out", str(tmp_path / "e"),
                           "--generator", "openai:missing", "--max-passages", "1")
        assert code == 2 and "answered HTTP 404" in err and not (tmp_path / "e" / "1_Ada_Lovelace").exists()
    # what the server got: the chat-completions protocol, the key, rwku's system turn, temperature 0
    first = server.seen[0]
    assert (first["path"], first["auth"], first["model"], first["temperature"]) == ("/v1/chat/completions", "Bearer test-key", "writer", 0)
    assert [m["role"] for m in first["messages"]] == ["system", "user"] and first["messages"][0]["content"] == SYSTEM
    calls = sum(r["calls"] for r in build["yield"].values())
    assert len([s for s in server.seen if s["model"] == "writer"]) == calls + 1  # forget_fb passage 1 was asked twice
    # the server is stopped: now the same URL is unreachable
    code, _, err = cli("build-target", "--name", NAME, "--source-text", str(source_file), "--out", str(tmp_path / "f"),
                       "--generator", "openai:writer", "--max-passages", "1")
    assert code == 2 and "cannot reach" in err and "check OPENAI_BASE_URL" in err
    monkeypatch.delenv("OPENAI_API_KEY")
    code, _, err = cli("build-target", "--name", NAME, "--source-text", str(source_file), "--out", str(tmp_path / "f"),
                       "--generator", "openai:writer")
    assert code == 2 and "OPENAI_API_KEY is not set" in err


@pytest.mark.integration
def test_openai_endpoint_serving_the_default_model(tmp_path, source_file, monkeypatch, cli):
    """The endpoint path end to end with a real model behind it: the loopback server answers each chat request with
    the default model (greedy, as the local generator does), and every answer is accounted for in the report."""
    pytest.importorskip("openai", reason="the endpoint generator needs the openai package: pip install 'rwku[openai]'")
    from rwku.knowledge.generators import LocalGenerator

    served = LocalGenerator("smollm2-135m", ModelPool(GeneratorOptions(run=RunSettings(device="cpu", dtype="float32", batch_size=16), max_new_tokens=32)))
    answers: list[str] = []

    def reply(model, messages):
        answers.append(served.answer([Request(messages[0]["content"], messages[1]["content"])])[0])
        return completion(model, answers[-1])

    monkeypatch.setenv("OPENAI_API_KEY", "local")
    with ChatServer(reply) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        code, out, err = cli("build-target", "--name", NAME, "--source-text", str(source_file), "--out", str(tmp_path),
                             "--generator", "openai:smollm2-135m", "--max-passages", "1", "--retries", "0")
    assert code == 0, err
    folder = tmp_path / "1_Ada_Lovelace"
    report = json.loads((folder / "report.json").read_text())
    assert len(answers) == sum(p.set == "forget" for p in PROMPTS)  # one request per forget kind, no retry
    assert all(len(f["attempts"]) == 1 and f["attempts"][0]["answer"] in answers for f in report["failures"])
    for kind, row in report["yield"].items():
        dropped = sum(row[r] for r in (MISSING, NO_BLANK, NOT_IN_SOURCE, ANSWER_IN_QUERY, DUPLICATE, FAILED_CHECK))
        assert row["probes"] == dropped + row["kept"], kind
        assert row["failed"] + (row["probes"] > 0) <= row["calls"]
    kept = sum(len(json.loads((folder / f"{f}.json").read_text())) for f in ("forget_level1", "forget_level2", "forget_level3"))
    assert kept == sum(row["kept"] for row in report["yield"].values())
