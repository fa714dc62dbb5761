"""The served backend (``--model openai:NAME``): against a fake OpenAI-compatible server with fixed answers (each
request kind, each way a request fails), and against ``rwku serve``'s loopback server running the tiny model,
whose answers must equal the ``hf`` backend's. Everything talks to 127.0.0.1 only."""

from __future__ import annotations

import json
import math
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rwku.data.sources import DEMO_ROOT
from rwku.errors import RwkuError

pytest.importorskip("openai", reason="the served backend needs the openai package: pip install 'rwku[openai]'")

from rwku.models.backends import make_backend  # noqa: E402
from rwku.models.endpoint import ServedOptions  # noqa: E402
from rwku.models.loading import load_model, load_served  # noqa: E402

FAST = ServedOptions(concurrency=4, timeout=5.0, retries=2, top_logprobs=3)


class FakeServer:
    """``/v1/models`` lists ``names``; ``/v1/completions`` answers ``reply(body) -> (status, payload)``; every
    completions body is kept in ``seen``."""

    def __init__(self, reply, names=("fake",)):
        self.seen: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.answer(200, {"object": "list", "data": [{"id": n, "object": "model", "created": int(time.time()),
                                                              "owned_by": "test", "max_model_len": 99} for n in names]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.append(body)
                status, payload = reply(body)
                self.answer(status, payload)

            def answer(self, status, payload):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("retry-after-ms", "10")  # the client's backoff: short in tests
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # a client that timed out has gone
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@contextmanager
def serving(server, monkeypatch):
    """Serve ``server`` (a FakeServer or rwku serve's) in a thread with OPENAI_BASE_URL pointing at it."""
    thread = threading.Thread(target=server.server.serve_forever if hasattr(server, "server") else server.serve_forever, daemon=True)
    thread.start()
    http = server.server if hasattr(server, "server") else server
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{http.server_address[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    try:
        yield
    finally:
        http.shutdown()
        http.server_close()


def choice(**fields) -> tuple[int, dict]:
    return 200, {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "fake",
                 "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None, **fields}]}


def served_backend(tiny_model_dir, name="fake", options=FAST):
    return make_backend(load_served(f"openai:{name}", tokenizer=str(tiny_model_dir), options=options))


# ---------------------------------------------------------------- each request kind, fixed answers


def test_generation_sends_token_ids_greedy_with_stops_and_cuts_at_the_first(tiny_model_dir, monkeypatch):
    fake = FakeServer(lambda body: choice(text="xx", token_ids=[5, 6, 9, 7]))
    with serving(fake, monkeypatch):
        backend = served_backend(tiny_model_dir)
        out = backend.generate("forget probes", [[1, 2, 3], [4, 5]], 30, [9, 2])
    assert out == [[5, 6], [5, 6]]  # cut before the first stop id, whatever the server did
    body = fake.seen[0]
    assert body["model"] == "fake" and body["prompt"] in ([1, 2, 3], [4, 5]) and body["max_tokens"] == 30
    assert body["temperature"] == 0 and body["stop_token_ids"] == [9, 2] and body["ignore_eos"] is True


def test_generation_reads_ids_from_logprob_tokens_or_re_encodes_the_text(tiny_model_dir, tiny_lm, monkeypatch):
    text = " Stephen King is"
    ids = tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    answers = iter([choice(text="?", logprobs={"tokens": [f"token_id:{i}" for i in (11, 12)], "token_logprobs": [0, 0]}),
                    choice(text=text)])
    fake = FakeServer(lambda body: next(answers))
    with serving(fake, monkeypatch):
        backend = served_backend(tiny_model_dir, options=ServedOptions(concurrency=1))
        assert backend.generate("t", [[1]], 8, [2]) == [[11, 12]]
        assert backend.generate("t", [[1]], 8, [2]) == [ids]


def test_scoring_reads_echoed_logprobs_greedy_flags_and_moments(tiny_model_dir, monkeypatch):
    sent = [1, 7, 8, 9]

    def reply(body):
        assert body["echo"] is True and body["prompt"] == sent
        tops = [None, {"token_id:7": -0.1, "token_id:3": -2.0}, {"token_id:4": -0.2, "token_id:8": -1.0},
                {"token_id:9": -0.3}, {"token_id:5": -0.1}]
        return choice(logprobs={"tokens": [f"token_id:{t}" for t in sent + [5]], "token_logprobs": [None, -0.1, -1.0, -0.3, -0.1],
                                "top_logprobs": tops, "text_offset": [0] * 5},
                      vocab_moments={"mean": [None, -3.0, -4.0, -5.0, -6.0], "std": [None, 1.0, 2.0, 3.0, 4.0]})

    fake = FakeServer(reply)
    with serving(fake, monkeypatch):
        backend = served_backend(tiny_model_dir)
        scores = backend.score("MIA FM", [sent], [2], vocab_moments=True, greedy=True)[0]
    assert scores.logprobs == [-1.0, -0.3] and scores.greedy == [False, True]
    assert scores.mean == [-4.0, -5.0] and scores.std == [2.0, 3.0]
    assert fake.seen[0]["logprobs"] == 1 and fake.seen[0]["vocab_moments"] is True


def test_scoring_reads_vllm_prompt_logprobs_and_leaves_out_moments_it_lacks(tiny_model_dir, monkeypatch):
    entries = [None, {"7": {"logprob": -0.5, "rank": 1}}, {"8": {"logprob": -1.5, "rank": 2}, "4": {"logprob": -0.7, "rank": 1}}]
    fake = FakeServer(lambda body: choice(prompt_logprobs=entries))
    with serving(fake, monkeypatch):
        scores = served_backend(tiny_model_dir).score("MIA", [[1, 7, 8]], [2], vocab_moments=True, greedy=True)[0]
    assert scores.logprobs == [-0.5, -1.5] and scores.greedy == [True, False] and scores.mean is None


def test_scoring_refuses_a_server_that_scored_other_tokens_or_too_few(tiny_model_dir, monkeypatch):
    answers = iter([choice(logprobs={"tokens": ["token_id:1", "token_id:6"], "token_logprobs": [None, -1.0]}),
                    choice(logprobs={"tokens": ["token_id:1"], "token_logprobs": [None]})])
    fake = FakeServer(lambda body: next(answers))
    with serving(fake, monkeypatch):
        backend = served_backend(tiny_model_dir, options=ServedOptions(concurrency=1))
        with pytest.raises(RwkuError, match="scored other tokens than rwku sent"):
            backend.score("TruthfulQA", [[1, 7]], [1])
        with pytest.raises(RwkuError, match="returned 1 prompt log-probs for 2 tokens.*log-probs with echo"):
            backend.score("TruthfulQA", [[1, 7]], [1])


def test_letter_probabilities_from_top_logprobs_and_exact_echo_for_the_rest(tiny_model_dir, monkeypatch):
    def reply(body):
        if body.get("echo"):  # a letter outside the top 3: scored as the prompt's next token
            prompt = body["prompt"]
            return choice(logprobs={"tokens": [f"token_id:{t}" for t in prompt], "token_logprobs": [None] * (len(prompt) - 1) + [-6.0]})
        return choice(logprobs={"tokens": ["token_id:10"], "token_logprobs": [-0.5],
                                "top_logprobs": [{"token_id:10": -0.5, "token_id:11": -1.5, "token_id:99": -2.5}]})

    fake = FakeServer(reply)
    with serving(fake, monkeypatch):
        probs = served_backend(tiny_model_dir).next_token_probs("MMLU", [[1, 2]], [10, 11, 12])[0]
    assert probs == pytest.approx([math.exp(-0.5), math.exp(-1.5), math.exp(-6.0)], abs=0)
    assert fake.seen[0]["logprobs"] == 3 and fake.seen[1]["prompt"] == [1, 2, 12]


def test_too_few_top_logprobs_is_one_line_naming_the_server_option(tiny_model_dir, monkeypatch):
    fake = FakeServer(lambda body: choice(logprobs={"tokens": ["token_id:10"], "token_logprobs": [-0.5],
                                                    "top_logprobs": [{"token_id:10": -0.5}]}))
    with serving(fake, monkeypatch):
        with pytest.raises(RwkuError, match="returned 1 top log-probs where 3 were asked.*--max-logprobs 3.*--top-logprobs"):
            served_backend(tiny_model_dir).next_token_probs("MMLU", [[1, 2]], [10, 11])


def test_missing_logprobs_are_a_clear_line(tiny_model_dir, monkeypatch):
    fake = FakeServer(lambda body: choice(text="x"))  # a server that ignores logprobs and echo
    with serving(fake, monkeypatch):
        backend = served_backend(tiny_model_dir, options=ServedOptions(concurrency=1, top_logprobs=2))
        with pytest.raises(RwkuError, match="returned 0 prompt log-probs"):
            backend.score("MIA", [[1, 2, 3]], [2])
        with pytest.raises(RwkuError, match="returned 0 top log-probs"):
            backend.next_token_probs("MMLU", [[1, 2]], [10])


def test_sampling_and_hidden_states_need_the_weights(tiny_model_dir, monkeypatch):
    with serving(FakeServer(lambda body: choice()), monkeypatch):
        backend = served_backend(tiny_model_dir)
        with pytest.raises(RwkuError, match="writing a corpus.*needs the model's weights"):
            backend.sample([[1]], 4, [2], [], 1.0, 1.0)
        with pytest.raises(RwkuError, match="hidden states.*needs the model's weights"):
            backend.layer_states([[1]], [])


# ---------------------------------------------------------------- failures


def test_a_model_the_server_does_not_serve(tiny_model_dir, monkeypatch):
    with serving(FakeServer(lambda body: choice(), names=("alpha", "beta")), monkeypatch):
        with pytest.raises(RwkuError, match="does not serve 'gamma' \\(it serves alpha, beta\\)"):
            served_backend(tiny_model_dir, name="gamma")


def test_404_and_persistent_500_and_bad_request(tiny_model_dir, monkeypatch):
    answers = {"a": (404, {"error": {"message": "The model `fake` does not exist.", "code": 404}}),
               "b": (500, {"error": {"message": "engine crashed", "code": 500}}),
               "c": (400, {"error": {"message": "unknown field echo", "code": 400}})}
    which = {"now": "a"}
    fake = FakeServer(lambda body: answers[which["now"]])
    with serving(fake, monkeypatch):
        backend = served_backend(tiny_model_dir, options=ServedOptions(concurrency=1, retries=2))
        with pytest.raises(RwkuError, match="answered HTTP 404.*does not exist.*check the model name"):
            backend.generate("BBH", [[1]], 4, [2])
        which["now"] = "b"
        seen = len(fake.seen)
        with pytest.raises(RwkuError, match="answered HTTP 500.*engine crashed.*after 2 retries"):
            backend.generate("BBH", [[1]], 4, [2])
        assert len(fake.seen) - seen == 3  # the first try and two retries
        which["now"] = "c"
        with pytest.raises(RwkuError, match="answered HTTP 400.*does not support"):
            backend.score("MIA", [[1, 2]], [1])


def test_429_then_success_is_retried_with_backoff(tiny_model_dir, monkeypatch):
    answers = iter([(429, {"error": {"message": "slow down"}}), (503, {"error": {"message": "busy"}}), choice(token_ids=[4])])
    fake = FakeServer(lambda body: next(answers))
    with serving(fake, monkeypatch):
        backend = served_backend(tiny_model_dir, options=ServedOptions(concurrency=1, retries=2))
        assert backend.generate("BBH", [[1]], 4, [2]) == [[4]]
    assert len(fake.seen) == 3


def test_timeout_and_unreachable_server(tiny_model_dir, monkeypatch):
    def slow(body):
        time.sleep(1.5)
        return choice(token_ids=[4])

    with serving(FakeServer(slow), monkeypatch):
        backend = served_backend(tiny_model_dir, options=ServedOptions(concurrency=1, timeout=0.5, retries=0))
        with pytest.raises(RwkuError, match="did not answer within 0.5 s.*--request-timeout"):
            backend.generate("Fluency", [[1]], 4, [2])
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens there now
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    with pytest.raises(RwkuError, match="cannot reach .*check OPENAI_BASE_URL"):
        load_served("openai:fake", tokenizer=str(tiny_model_dir), options=ServedOptions(retries=0, timeout=2))


def test_cli_errors_are_one_line(tiny_model_dir, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    with serving(FakeServer(lambda body: choice(), names=("alpha",)), monkeypatch):
        code, _, err = cli("eval", "--model", "openai:gamma", "--tokenizer", str(tiny_model_dir), "--data", str(DEMO_ROOT),
                           "--targets", "1", "--out", str(tmp_path / "e"), "--limit", "1")
        assert code == 2 and "does not serve 'gamma'" in " ".join(err.split()) and "Traceback" not in err
        code, _, err = cli("eval", "--model", str(tiny_model_dir), "--tokenizer", str(tiny_model_dir), "--data", str(DEMO_ROOT),
                           "--targets", "1", "--out", str(tmp_path / "e"), "--limit", "1")
        assert code == 2 and "only for a served model" in " ".join(err.split())
        code, _, err = cli("unlearn", "--method", "ga", "--model", "openai:alpha", "--data", str(DEMO_ROOT), "--targets", "1",
                           "--out", str(tmp_path / "u"), "--limit", "1")
        assert code == 2 and "unlearning (training" in " ".join(err.split())


# ---------------------------------------------------------------- rwku serve: the tiny model, equal to the hf backend


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    """The tiny model freshly loaded for this module (not the session's shared one, which tests elsewhere may have
    changed), so that the server answers as a local ``--model`` of the same folder does."""
    from rwku.models.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture
def tiny_server(tiny_model_dir, tiny_lm, monkeypatch):
    from rwku.serving import ServedModels, make_server

    server = make_server(ServedModels({"tiny": (tiny_lm, {"root": str(tiny_model_dir)})}, batch_size=4), port=0)
    assert server.server_address[0] == "127.0.0.1"
    with serving(server, monkeypatch):
        yield server


def test_loopback_server_answers_as_the_hf_backend(tiny_model_dir, tiny_lm, tiny_server):
    served = served_backend(tiny_model_dir, name="tiny", options=ServedOptions(concurrency=4, top_logprobs=5))
    local = make_backend(tiny_lm)
    encode = lambda text: tiny_lm.tokenizer(text)["input_ids"]  # noqa: E731
    prompts = [encode(t) for t in ("Stephen King is", "Question: Who wrote the book? Answer:", "Isaac Newton was an")]
    stops = [int(tiny_lm.tokenizer.eos_token_id), 0]
    assert served.generate("t", prompts, 12, stops) == local.generate("t", prompts, 12, stops)
    mine = local.score("MIA", prompts, [len(p) - 1 for p in prompts], vocab_moments=True, greedy=True)
    theirs = served.score("MIA", prompts, [len(p) - 1 for p in prompts], vocab_moments=True, greedy=True)
    for a, b in zip(mine, theirs):
        assert b.logprobs == a.logprobs and b.mean == a.mean and b.std == a.std and b.greedy == a.greedy
    letters = [encode(" " + letter)[-1] for letter in "ABCD"]
    expected = local.next_token_probs("MMLU", prompts, letters)
    whole = served_backend(tiny_model_dir, name="tiny", options=ServedOptions(top_logprobs=len(tiny_lm.tokenizer)))
    for a, b in zip(expected, whole.next_token_probs("MMLU", prompts, letters)):  # every letter in the top log-probs
        assert b == pytest.approx(a, rel=1e-12)
    for a, b in zip(expected, served.next_token_probs("MMLU", prompts, letters)):  # outside the top 5: scored by echo
        assert b == pytest.approx(a, rel=1e-5) and max(range(4), key=b.__getitem__) == max(range(4), key=a.__getitem__)


def test_loopback_server_refuses_sampling_an_unknown_model_and_other_paths(tiny_server):
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{tiny_server.server_address[1]}/v1"

    def post(path, body):
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert post("/completions", {"model": "tiny", "prompt": [1, 5], "temperature": 0.7})[0] == 400
    status, body = post("/completions", {"model": "other", "prompt": [1, 5], "temperature": 0})
    assert status == 404 and "does not exist" in body["error"]["message"]
    assert post("/chat/completions", {"model": "tiny"})[0] == 404
    assert post("/completions", {"model": "tiny", "prompt": [1, 5], "temperature": 0, "max_tokens": 0})[0] == 400
    status, body = post("/completions", {"model": "tiny", "prompt": [1, 5, 6], "temperature": 0, "max_tokens": 0, "echo": True,
                                         "logprobs": 0, "return_tokens_as_token_ids": True})
    assert status == 200 and body["choices"][0]["logprobs"]["tokens"] == ["token_id:1", "token_id:5", "token_id:6"]
    assert body["choices"][0]["logprobs"]["token_logprobs"][0] is None and body["choices"][0]["token_ids"] == []
    status, body = post("/completions", {"model": "tiny", "prompt": "Stephen King", "temperature": 0, "max_tokens": 3})
    assert status == 200 and len(body["choices"][0]["token_ids"]) <= 3


def test_eval_through_the_server_is_stored_resumable_and_keyed_by_the_server(tiny_model_dir, tmp_path, tiny_server, cli):
    args = ["eval", "--model", "openai:tiny", "--tokenizer", str(tiny_model_dir), "--data", str(DEMO_ROOT), "--targets", "1",
            "--out", str(tmp_path / "served"), "--limit", "2", "--threads", "1", "--top-logprobs", "8"]
    code, out, err = cli(*args)
    assert code == 0, err
    summary = json.loads((tmp_path / "served" / "1_Isaac_Newton" / "summary.json").read_text())
    assert summary["key"]["model"]["server"] == {"id": "tiny", "object": "model", "owned_by": "rwku", "root": str(tiny_model_dir)}
    assert summary["key"]["model"]["tokenizer"]["spec"] == str(tiny_model_dir)
    assert summary["key"]["eval"]["device"] == "server" and summary["provenance"]["server"]["model"]["id"] == "tiny"
    code, out, err = cli(*args, "--dry-run")
    assert code == 0 and "stored" in out
    local = ["eval", "--model", str(tiny_model_dir), "--data", str(DEMO_ROOT), "--targets", "1", "--out", str(tmp_path / "hf"),
             "--limit", "2", "--threads", "1", "--device", "cpu"]
    assert cli(*local)[0] == 0
    mine = json.loads((tmp_path / "hf" / "1_Isaac_Newton" / "items.json").read_text())
    theirs = json.loads((tmp_path / "served" / "1_Isaac_Newton" / "items.json").read_text())
    for part in ("forget", "neighbor", "mia"):
        assert theirs[part] == mine[part], part
    for name in ("bbh", "triviaqa", "fluency"):
        assert theirs["utility"][name] == mine["utility"][name], name
    for a, b in zip(mine["utility"]["truthful"], theirs["utility"]["truthful"]):  # the server scores every position
        assert b["output"] == a["output"] and b["choice_logprobs"] == pytest.approx(a["choice_logprobs"], rel=1e-5)
    for a, b in zip(mine["utility"]["mmlu"], theirs["utility"]["mmlu"]):  # letters outside the top 8: echo, float noise
        assert b["output"] == a["output"] and b["letter_probs"] == pytest.approx(a["letter_probs"], rel=1e-5)


def test_a_lora_adapter_served_by_name_answers_as_the_adapter_loaded_locally(tiny_model_dir, tmp_path, monkeypatch):
    """The --save-model recipe for LoRA: the adapter folder served over the base (vLLM's --lora-modules), evaluated
    by name, answers as the same adapter loaded locally (rwku audit's way of loading a saved adapter)."""
    from peft import LoraConfig, get_peft_model

    from rwku.saved_audit import load_saved
    from rwku.serving import ServedModels, load_served_models, make_server, parse_lora

    base = load_model(str(tiny_model_dir), device="cpu")
    adapter = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    folder = tmp_path / "ga-lora" / "model"
    adapter.save_pretrained(folder)
    models = load_served_models(str(tiny_model_dir), "base", parse_lora([f"ga={folder}"]), device="cpu")
    assert models["ga"][1]["parent"] == "base"
    with serving(make_server(ServedModels(models), port=0), monkeypatch):
        served = served_backend(tiny_model_dir, name="ga")
        plain = served_backend(tiny_model_dir, name="base")
        local = make_backend(load_saved.__wrapped__(str(folder), str(tiny_model_dir), "cpu", "auto", "invariant"))
        prompts = [tiny_lm_ids(base, "Stephen King is"), tiny_lm_ids(base, "Isaac Newton was")]
        assert served.generate("t", prompts, 10, [2]) == local.generate("t", prompts, 10, [2])
        scored = [len(p) - 1 for p in prompts]
        assert [s.logprobs for s in served.score("t", prompts, scored)] == [s.logprobs for s in local.score("t", prompts, scored)]
        assert plain.score("t", prompts, scored)[0].logprobs != local.score("t", prompts, scored)[0].logprobs
    with pytest.raises(RwkuError, match="give NAME=PATH"):
        parse_lora(["just-a-path"])


def tiny_lm_ids(lm, text):
    return lm.tokenizer(text)["input_ids"]


def test_mia_without_vocabulary_moments_reports_min_k_plus_plus_missing(tiny_model_dir, monkeypatch):
    """A server that returns no moments (any but rwku serve): Min-K%++ is left out and said so, never guessed."""
    from rwku.data.schema import MiaText
    from rwku.evaluation.context import EvalContext
    from rwku.evaluation.sets.mia import evaluate_mia
    from rwku.models.prompting import PromptFormat

    def reply(body):
        prompt = body["prompt"]
        return choice(logprobs={"tokens": [f"token_id:{t}" for t in prompt], "token_logprobs": [None] + [-1.0] * (len(prompt) - 1)})

    with serving(FakeServer(reply), monkeypatch):
        lm = load_served("openai:fake", tokenizer=str(tiny_model_dir), options=FAST)
        ctx = EvalContext(lm=lm, prompts=PromptFormat(lm.tokenizer))
        texts = [MiaText(text="Stephen King is an American author.", subject="Stephen King")]
        summary, items = evaluate_mia(ctx, texts, texts)
    assert summary["FM"] == pytest.approx(100.0) and "mink_0.2" in summary["attacks"]
    assert not any(name.startswith("mink++") for name in items[0]["attacks"]) and "mink++" in summary["attacks_missing"]


def test_commands_that_need_the_weights_refuse_a_served_model(tmp_path, cli):
    """Unlearning, auditing and planting change or read weights: one line each, before any request."""
    for args in (("unlearn", "--method", "ga", "--model", "openai:m", "--data", "demo", "--targets", "1", "--out", str(tmp_path / "u")),
                 ("audit", "--model", "openai:m", "--original", "smollm2-135m", "--data", "demo", "--targets", "1", "--audit", "quant8",
                  "--out", str(tmp_path / "a")),
                 ("plant", "--model", "openai:m", "--data", "demo", "--targets", "1", "--out", str(tmp_path / "p"))):
        code, _, err = cli(*args)
        assert code == 2 and "needs the model's weights" in " ".join(err.split()) and "Traceback" not in err, args[0]
