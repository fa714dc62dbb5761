"""``rwku serve``: a loopback OpenAI-compatible completions server for local models, for tests, for the served
backend's comparison with the ``hf`` backend, and for evaluating unlearned models the way a vLLM user would.

It binds 127.0.0.1 only and answers ``GET /v1/models`` and ``POST /v1/completions`` (token-id or text prompts,
greedy only) with the fields vLLM adds: ``stop_token_ids``, ``ignore_eos``, ``return_token_ids`` (the generated
ids as ``token_ids``), ``return_tokens_as_token_ids`` (log-prob tokens written ``token_id:N``) and
``skip_special_tokens``; ``echo`` with ``logprobs`` returns the prompt's own log-probs, and one field of its own,
``vocab_moments``, returns the mean and standard deviation of log p over the vocabulary at each returned position
(what Min-K%++ needs; no other server has it). Each model is run by rwku's ``hf`` backend under invariant kernels,
so a request's answer does not depend on the requests beside it: requests that arrive together with the same
settings are answered in one backend call (generation in shared decode passes). Log-probs of generated and
echoed tokens are the backend's scores; the top alternatives at the first generated position are its next-token
distribution, those at echoed prompt positions a plain forward pass of the transformers model.

Like vLLM's ``--lora-modules``, ``lora`` serves adapters (a LoRA folder from ``rwku unlearn --save-model``) over
the base model, each under its own name. ``/v1/models`` reports each model's spec and the fingerprint of its files,
which an evaluation's key then holds.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

import torch

from rwku.errors import RwkuError
from rwku.models.fingerprint import model_fingerprint
from rwku.models.backends import Backend, make_backend
from rwku.models.loading import LoadedModel, load_model

LOOPBACK = "127.0.0.1"


class RequestError(Exception):
    """A request the server refuses: an HTTP status and the message of its OpenAI-style error body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One backend call waiting for the worker: ``group`` says which calls may share a backend call."""

    group: tuple
    rows: list[Any]
    done: Future = field(default_factory=Future)


class Worker:
    """Runs one model's backend calls on one thread; calls waiting with the same ``group`` run as one call."""

    def __init__(self, lm: LoadedModel, batch_size: int):
        self.lm = lm
        self.backend: Backend = make_backend(lm, batch_size=batch_size)
        self.waiting: queue.Queue[Job] = queue.Queue()
        threading.Thread(target=self.loop, daemon=True, name=f"rwku-serve-{lm.name}").start()

    def call(self, group: tuple, rows: list[Any]) -> list[Any]:
        job = Job(group, rows)
        self.waiting.put(job)
        return job.done.result()

    def loop(self) -> None:
        while True:
            jobs = [self.waiting.get()]
            later = []
            while not self.waiting.empty():
                job = self.waiting.get()
                (jobs if job.group == jobs[0].group else later).append(job)
            for job in later:
                self.waiting.put(job)
            rows = [row for job in jobs for row in job.rows]
            try:
                answers = self.run(jobs[0].group, rows)
            except Exception as exc:  # handed to every request of the call, answered as a 500
                for job in jobs:
                    job.done.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                job.done.set_result(answers[start:start + len(job.rows)])
                start += len(job.rows)

    def run(self, group: tuple, rows: list[Any]) -> list[Any]:
        kind, *settings = group
        if kind == "generate":
            max_tokens, stops = settings
            return self.backend.generate("served", rows, max_tokens, sorted(stops))
        if kind == "score":
            (moments,) = settings
            return self.backend.score("served", rows, [len(row) - 1 for row in rows], vocab_moments=moments)
        vocabulary = list(range(self.lm.model.config.vocab_size))
        return self.backend.next_token_probs("served", rows, vocabulary)


class ServedModels:
    """The models a server answers for, by name, with what ``/v1/models`` reports of each."""

    def __init__(self, models: dict[str, tuple[LoadedModel, dict[str, Any]]], batch_size: int = 16):
        self.workers = {name: Worker(lm, batch_size) for name, (lm, _) in models.items()}
        self.reports = {name: report for name, (_, report) in models.items()}

    def listing(self) -> dict[str, Any]:
        now = int(time.time())
        return {"object": "list", "data": [{"id": name, "object": "model", "created": now, "owned_by": "rwku", **report}
                                           for name, report in self.reports.items()]}

    def worker(self, name: Any) -> Worker:
        if name not in self.workers:
            raise RequestError(404, f"The model `{name}` does not exist.")
        return self.workers[name]


def completion(models: ServedModels, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to one ``/v1/completions`` request (one choice per prompt)."""
    worker = models.worker(body.get("model"))
    if float(body.get("temperature", 1.0) or 0.0) != 0.0:
        raise RequestError(400, "rwku serve decodes greedily only: send temperature 0")
    prompts = prompt_ids(worker.lm.tokenizer, body.get("prompt"))
    choices = [choice(worker, prompt, body, index) for index, prompt in enumerate(prompts)]
    used = sum(len(p) for p in prompts)
    generated = sum(len(c["token_ids"]) for c in choices)
    return {"id": f"cmpl-{time.monotonic_ns()}", "object": "text_completion", "created": int(time.time()),
            "model": body["model"], "choices": choices,
            "usage": {"prompt_tokens": used, "completion_tokens": generated, "total_tokens": used + generated}}


def prompt_ids(tokenizer: Any, prompt: Any) -> list[list[int]]:
    """The prompts of a request as token ids: a text (encoded with the tokenizer's special tokens, as vLLM does),
    a list of ids, or a list of either."""
    if isinstance(prompt, str):
        return [list(tokenizer(prompt)["input_ids"])]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        return [ids for p in prompt for ids in prompt_ids(tokenizer, p)]
    raise RequestError(400, "prompt: give a text, a list of token ids, or a list of those")


def choice(worker: Worker, prompt: list[int], body: dict[str, Any], index: int) -> dict[str, Any]:
    """One prompt's choice: the greedy continuation, and the log-probs the request asks for."""
    tokenizer, lm = worker.lm.tokenizer, worker.lm
    max_tokens = 16 if body.get("max_tokens") is None else int(body["max_tokens"])
    echo, k = bool(body.get("echo")), body.get("logprobs")
    if max_tokens < 0 or (max_tokens == 0 and not echo):
        raise RequestError(400, "max_tokens: at least 1 (0 only with echo, to score the prompt alone)")
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    if limit and len(prompt) + max_tokens > limit:
        raise RequestError(400, f"This model's maximum context length is {limit} tokens; the prompt has {len(prompt)} "
                                f"and max_tokens is {max_tokens}")
    stops = frozenset(int(t) for t in body.get("stop_token_ids") or ()) | (
        frozenset() if body.get("ignore_eos") else frozenset({int(tokenizer.eos_token_id)}))
    one_reported = max_tokens == 1 and (k or echo)
    next_probs = worker.call(("next",), [prompt])[0] if one_reported else None
    if next_probs is not None:  # one token: the argmax of the same distribution its log-probs come from
        best = max(range(len(next_probs)), key=next_probs.__getitem__)
        generated = [] if best in stops else [best]
    elif max_tokens == 0:
        generated = []
    else:
        generated = worker.call(("generate", max_tokens, stops), [prompt])[0]
    skip = body.get("skip_special_tokens", True)
    text = tokenizer.decode(generated, skip_special_tokens=skip)
    answer: dict[str, Any] = {"index": index, "text": (tokenizer.decode(prompt, skip_special_tokens=skip) if echo else "") + text,
                              "token_ids": generated, "logprobs": None,
                              "finish_reason": "length" if len(generated) >= max_tokens else "stop"}
    if k is not None:
        returned = (prompt if echo else []) + generated
        answer["logprobs"], moments = logprob_block(worker, prompt, generated, returned, int(k), next_probs, body)
        if body.get("vocab_moments"):
            answer["vocab_moments"] = moments
    return answer


def logprob_block(worker: Worker, prompt: list[int], generated: list[int], returned: list[int], k: int,
                  next_probs: Sequence[float] | None, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAI ``logprobs`` block of the ``returned`` tokens (the prompt's too when echoed), and the vocabulary
    moments at the same positions (None where a token is not predicted, the first, and at generated tokens).

    Echoed prompt tokens are scored as the prompt alone, exactly as the ``hf`` backend scores that sequence; a
    single generated token takes its log-prob from the next-token distribution it was chosen from; longer
    continuations are scored after the prompt."""
    tokenizer = worker.lm.tokenizer
    sequence = prompt + generated
    echoed = len(returned) > len(generated)
    moments_asked = bool(body.get("vocab_moments"))
    prompt_scores = worker.call(("score", moments_asked), [prompt])[0] if echoed and len(prompt) > 1 else None
    logprobs: list[float | None] = [None] + list(prompt_scores.logprobs) if prompt_scores else [None] * len(prompt)
    means = [None] + list(prompt_scores.mean) if prompt_scores and moments_asked else [None] * len(prompt)
    stds = [None] + list(prompt_scores.std) if prompt_scores and moments_asked else [None] * len(prompt)
    if next_probs is not None and len(generated) == 1:
        logprobs.append(math.log(next_probs[generated[0]]))
    elif generated:
        logprobs += worker.call(("score", False), [sequence])[0].logprobs[-len(generated):]
    first = len(sequence) - len(returned)  # position of the first returned token in the sequence
    positions = range(first, len(sequence))
    label = (lambda t: f"token_id:{t}") if body.get("return_tokens_as_token_ids") else (lambda t: tokenizer.decode([t]))
    block = {"tokens": [label(sequence[p]) for p in positions], "token_logprobs": [logprobs[p] for p in positions],
             "top_logprobs": top_alternatives(worker, sequence, positions, k, next_probs, len(prompt), label),
             "text_offset": text_offsets(tokenizer, [sequence[p] for p in positions])}
    padded = [None] * len(generated)
    moments = {"mean": [(means + padded)[p] for p in positions], "std": [(stds + padded)[p] for p in positions]}
    return block, moments


def top_alternatives(worker: Worker, sequence: list[int], positions: range, k: int, next_probs: Sequence[float] | None,
                     prompt_length: int, label: Any) -> list[dict[str, float] | None]:
    """At each of ``positions`` the ``k`` most likely tokens with their log-probs (None at the first token, or for
    k 0): after the prompt from the backend's next-token distribution when it was computed, elsewhere from one
    plain forward pass over the sequence."""
    if k <= 0:
        return [None for _ in positions]
    forward = None
    if any(p > 0 and not (p == prompt_length and next_probs is not None) for p in positions):
        with torch.no_grad():
            logits = worker.lm.model(input_ids=torch.tensor([sequence], device=worker.lm.device)).logits[0]
        forward = torch.log_softmax(logits.double(), dim=-1)
    tops: list[dict[str, float] | None] = []
    for position in positions:
        if position == 0:
            tops.append(None)
            continue
        if position == prompt_length and next_probs is not None:
            logprobs = torch.tensor(next_probs, dtype=torch.float64).log()
        else:
            logprobs = forward[position - 1]
        values, ids = torch.topk(logprobs, k)
        tops.append({label(int(t)): float(v) for v, t in zip(values.tolist(), ids.tolist())})
    return tops


def text_offsets(tokenizer: Any, tokens: list[int]) -> list[int]:
    offsets, length = [], 0
    for token in tokens:
        offsets.append(length)
        length += len(tokenizer.decode([token]))
    return offsets


class Handler(BaseHTTPRequestHandler):
    """HTTP in and out: JSON bodies, OpenAI-style error bodies."""

    models: ServedModels
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self.send(200, self.models.listing())
        else:
            self.send(404, error_body(404, f"no endpoint {self.path}; rwku serve answers /v1/models and /v1/completions"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
            self.send(404, error_body(404, f"no endpoint {self.path}; rwku serve answers /v1/models and /v1/completions"))
            return
        try:
            self.send(200, completion(self.models, json.loads(raw or b"{}")))
        except RequestError as exc:
            self.send(exc.status, error_body(exc.status, str(exc)))
        except (ValueError, TypeError) as exc:
            self.send(400, error_body(400, f"bad request: {exc}"))
        except Exception as exc:  # the model failed: the client sees a 500 with the reason
            self.send(500, error_body(500, f"{type(exc).__name__}: {exc}"))

    def send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, allow_nan=True).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: rwku prints its own lines
        pass


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    return {"error": {"message": message, "type": kind, "code": status}, "object": "error", "message": message}


def make_server(models: ServedModels, port: int = 0) -> ThreadingHTTPServer:
    """The server on 127.0.0.1 (``port`` 0: a free one, read from ``server.server_address``); not yet serving."""
    handler = type("BoundHandler", (Handler,), {"models": models})
    server = ThreadingHTTPServer((LOOPBACK, port), handler)
    server.daemon_threads = True
    return server


def parse_lora(values: Sequence[str]) -> dict[str, str]:
    """``NAME=PATH`` pairs (vLLM's ``--lora-modules`` form)."""
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise RwkuError(f"--lora {value}: give NAME=PATH (a LoRA adapter folder, e.g. one rwku unlearn --save-model wrote)")
        pairs[name] = path
    return pairs


def load_served_models(spec: str, name: str | None, lora: dict[str, str], device: str = "auto") -> dict[str, tuple[LoadedModel, dict[str, Any]]]:
    """The base model under ``name`` (its spec when None) and each adapter over its own copy of the base, with what
    ``/v1/models`` reports of each: spec, parent, fingerprint of the files, dtype, kernels, maximum length."""
    from rwku.saved_audit import load_saved

    base = load_model(spec, device=device)
    models = {name or spec: (base, report(base, spec, None))}
    for adapter, path in lora.items():
        loaded = load_saved.__wrapped__(path, spec, device, "auto", "invariant")
        models[adapter] = (loaded, report(loaded, path, name or spec))
    return models


def report(lm: LoadedModel, spec: str, parent: str | None) -> dict[str, Any]:
    config = lm.model.config
    return {"root": spec, "parent": parent, "max_model_len": getattr(config, "max_position_embeddings", None),
            "rwku": {"fingerprint": model_fingerprint(spec), "dtype": str(lm.dtype).removeprefix("torch."),
                     "kernels": lm.kernels, "vocab_moments": True}}
