"""Who writes a new target's probes (``rwku build-target --generator G``): a local model or a chat endpoint.

A generator takes requests (a system turn and a user turn) and returns one answer text each. Two kinds:

* a **local model**, any ``--model`` spec (``smollm2-135m``, a folder, a ``.gguf`` file, a hub id), loaded the way
  rwku loads every model and answering greedily through :meth:`rwku.evaluation.context.EvalContext.generate`
  (batched, the same answer at any batch size). Its answer is started with ``[{"query": "`` (the JSON array the
  prompts ask for), which small models otherwise rarely begin with;
* an **OpenAI-compatible chat endpoint**, ``openai:MODEL``, through the ``openai`` package (``pip install
  'rwku[openai]'``), with the base URL and key from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` (any key for a
  local server), at temperature 0 (the client is :mod:`rwku.models.endpoint`'s, shared with ``--model openai:NAME``).

:data:`GENERATOR_KINDS` maps a spec's prefix to its kind; a spec without a known prefix is a local model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from rwku.evaluation.context import EvalContext, ProgressFactory, no_progress
from rwku.evaluation.settings import RunSettings
from rwku.models.endpoint import endpoint_errors, endpoint_name, openai_client
from rwku.models.loading import LoadedModel


@dataclass(frozen=True)
class Request:
    """One request to a generator: the system turn and the user turn."""

    system: str
    user: str


@dataclass(frozen=True)
class GeneratorOptions:
    """How a generator answers: the answer's token budget; for local models (the generator's and the check models')
    how they run (``run``: prompt format, batch size, device, dtype; its ``model`` is each spec in turn); for an
    endpoint the seconds a request may take."""

    max_new_tokens: int = 512
    run: RunSettings = field(default_factory=lambda: RunSettings(batch_size=16))
    timeout: float = 120.0


class Generator(Protocol):
    spec: str

    def describe(self) -> dict[str, Any]:
        """What produced the answers (stored in the target folder's ``build.json``)."""

    def answer(self, requests: Sequence[Request]) -> list[str]:
        """One answer text per request, in order; an unreachable generator raises :class:`rwku.errors.RwkuError`."""


class ModelPool:
    """Local models loaded once each, shared by the generator and the check models (one spec, one load)."""

    def __init__(self, options: GeneratorOptions):
        self.options = options
        self.loaded: dict[str, LoadedModel] = {}

    def get(self, spec: str) -> LoadedModel:
        if spec not in self.loaded:
            self.loaded[spec] = self.options.run.load(spec)
        return self.loaded[spec]

    def context(self, spec: str, progress: ProgressFactory = no_progress) -> EvalContext:
        """The evaluation context of ``spec``: its prompt format and the pool's batch size."""
        return self.options.run.context(self.get(spec), progress=progress)


class LocalGenerator:
    """A local model answering greedily, its answer started with :attr:`prefill`."""

    prefill = "[{\"query\": \""

    def __init__(self, spec: str, pool: ModelPool, progress: ProgressFactory = no_progress):
        self.spec = spec
        self.pool = pool
        self.progress = progress

    def describe(self) -> dict[str, Any]:
        lm = self.pool.get(self.spec)
        return {"kind": "local", "spec": self.spec, "source": lm.source, "decoding": "greedy",
                "prefill": self.prefill, "prompt_format": self.pool.options.run.prompt_format,
                "max_new_tokens": self.pool.options.max_new_tokens}

    def answer(self, requests: Sequence[Request]) -> list[str]:
        ctx = self.pool.context(self.spec, self.progress)
        prompts = [ctx.prompts.render(r.user, system=r.system) + self.prefill for r in requests]
        outputs = ctx.generate(f"writing probes · {self.spec}", prompts, self.pool.options.max_new_tokens,
                               ctx.official_stop_ids("<|eot_id|>"))
        return [self.prefill + output for output in outputs]


class OpenAIGenerator:
    """A model behind an OpenAI-compatible chat-completions endpoint (``openai:MODEL``)."""

    def __init__(self, spec: str, options: GeneratorOptions):
        self.spec = spec
        self.model = endpoint_name(spec, "--generator")
        self.options = options
        self.client = openai_client(f"--generator {spec}", options.timeout)

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai", "spec": self.spec, "model": self.model, "base_url": str(self.client.base_url),
                "temperature": 0, "max_tokens": self.options.max_new_tokens}

    def answer(self, requests: Sequence[Request]) -> list[str]:
        return [self.complete(request) for request in requests]

    def complete(self, request: Request) -> str:
        messages = [{"role": "system", "content": request.system}, {"role": "user", "content": request.user}]
        with endpoint_errors(f"--generator {self.spec}", self.client):
            response = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                           max_tokens=self.options.max_new_tokens)
        if not response.choices:
            return ""
        return response.choices[0].message.content or ""


#: Spec prefix -> how to make that kind of generator; a spec without one of these prefixes is a local model.
GENERATOR_KINDS: dict[str, Callable[[str, ModelPool, ProgressFactory], Generator]] = {
    "openai": lambda spec, pool, progress: OpenAIGenerator(spec, pool.options),
}


def make_generator(spec: str, pool: ModelPool, progress: ProgressFactory = no_progress) -> Generator:
    """The generator ``spec`` names: ``openai:MODEL`` or a local model spec."""
    prefix = spec.split(":", 1)[0] if ":" in spec else ""
    if prefix in GENERATOR_KINDS:
        return GENERATOR_KINDS[prefix](spec, pool, progress)
    return LocalGenerator(spec, pool, progress)
