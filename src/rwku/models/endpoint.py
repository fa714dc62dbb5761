"""An OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, llama.cpp's ``llama-server``, ``rwku serve``): the client,
its settings from the environment, and one clear line for each way a request can fail.

The base URL comes from ``OPENAI_BASE_URL`` (OpenAI's own when unset) and the key from ``OPENAI_API_KEY`` (any
value for a local server), through the ``openai`` package (``pip install 'rwku[openai]'``). Requests that fail
with 408, 409, 429 or 5xx, a timeout or a lost connection are retried by that package with exponential backoff
(``retries`` times); what still fails becomes an :class:`~rwku.errors.RwkuError` naming the option that fixes it.
``rwku build-target --generator openai:MODEL`` and ``rwku eval --model openai:MODEL`` share this client;
:class:`ServedModel` is the handle of a model evaluated through one (its requests are
:class:`rwku.models.backends.served.ServedBackend`'s).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterator, Sequence

from rwku.errors import RwkuError

#: The model-spec prefix of a model behind an OpenAI-compatible endpoint (``--model openai:NAME``).
ENDPOINT_PREFIX = "openai:"


def endpoint_name(spec: str, option: str) -> str:
    """The model's name on the server from ``openai:NAME``; an empty name is a one-line error."""
    name = spec.split(":", 1)[1] if ":" in spec else ""
    if not name:
        raise RwkuError(f"{option} {spec}: name the endpoint's model, e.g. openai:gpt-4o or openai:my-model")
    return name


def refuse_served(spec: str, doing: str) -> None:
    """A one-line refusal of a served model (``openai:NAME``) where rwku needs its weights (``doing`` says what)."""
    if spec.startswith(ENDPOINT_PREFIX):
        raise RwkuError(f"--model {spec}: {doing} needs the model's weights, which a served model does not give; use a "
                        "local copy (docs/served-models.md: unlearn with --save-model, serve the result, evaluate it)")


def openai_client(what: str, timeout: float, retries: int = 1) -> Any:
    """An ``openai.OpenAI`` client from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``; ``what`` names the option that
    asked for it (``--generator openai:gpt-4o``) in every error line."""
    try:
        import openai
    except ImportError:
        raise RwkuError(f"{what}: needs the openai package; install it with pip install 'rwku[openai]'") from None
    if not os.environ.get("OPENAI_API_KEY"):
        raise RwkuError(f"{what}: OPENAI_API_KEY is not set; set it (any value for a local server) "
                        "and OPENAI_BASE_URL for an endpoint other than OpenAI's")
    return openai.OpenAI(base_url=os.environ.get("OPENAI_BASE_URL") or None, api_key=os.environ["OPENAI_API_KEY"],
                         timeout=timeout, max_retries=retries)


@contextmanager
def endpoint_errors(what: str, client: Any, request: str = "") -> Iterator[None]:
    """Turn what the ``openai`` package raises into one line: a server that is down or too slow, a model it does not
    serve or an endpoint it lacks (404), a request it refuses (400/422), anything else it answers with an error."""
    import openai

    url = str(client.base_url)
    doing = f" ({request})" if request else ""
    try:
        yield
    except openai.APITimeoutError as exc:
        raise RwkuError(f"{what}: {url} did not answer within {client.timeout} s{doing} after {client.max_retries} "
                        "retries; raise --request-timeout or lower --concurrency") from exc
    except openai.APIConnectionError as exc:
        raise RwkuError(f"{what}: cannot reach {url} ({exc}); check OPENAI_BASE_URL and that the server is running") from exc
    except openai.NotFoundError as exc:
        raise RwkuError(f"{what}: {url} answered HTTP 404{doing} ({status_message(exc)}); check the model name "
                        "(GET /v1/models lists what it serves) and that the server offers this endpoint") from exc
    except openai.APIStatusError as exc:
        hint = ("check OPENAI_API_KEY" if exc.status_code in (401, 403)
                else "the server refused a request field it does not support" if exc.status_code in (400, 422)
                else f"it still failed after {client.max_retries} retries")
        raise RwkuError(f"{what}: {url} answered HTTP {exc.status_code}{doing} ({status_message(exc)}); {hint}") from exc


def status_message(exc: Any) -> str:
    """The server's own error message, on one line."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(message or exc.message).split())[:300]


#: Fields of a ``/v1/models`` entry that change from one request to the next (vLLM stamps ``created`` and a
#: permission id per call): left out of what identifies the served model.
VOLATILE_FIELDS = ("created", "permission")


@dataclass(frozen=True)
class ServedOptions:
    """How requests reach the server; none of it changes a number (a deterministic server answers the same)."""

    concurrency: int = 8
    timeout: float = 600.0
    retries: int = 4
    top_logprobs: int = 20


class ServedModel:
    """The handle of a model on a server: its name there, the client, and what the server reports of it. Stands
    where a loaded model's module would (:attr:`rwku.models.loading.LoadedModel.model`); it has no weights."""

    dtype = None  # no weights here

    def __init__(self, spec: str, options: ServedOptions = ServedOptions()):
        self.spec = spec
        self.name = endpoint_name(spec, "--model")
        self.options = options
        self.what = f"--model {spec}"
        self.client = openai_client(self.what, options.timeout, options.retries)

    @property
    def device(self) -> Any:
        """Where rwku's own tensors go: the CPU (the model's are on the server)."""
        import torch

        return torch.device("cpu")

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    @cached_property
    def identity(self) -> dict[str, Any]:
        """What the server reports of this model (``GET /v1/models``), without the fields that change per call; a
        name the server does not serve is a one-line error listing those it does."""
        with endpoint_errors(self.what, self.client, "GET /models"):
            entries = [entry.model_dump(exclude_unset=True) for entry in self.client.models.list()]
        for entry in entries:
            if entry.get("id") == self.name:
                return {key: value for key, value in entry.items() if key not in VOLATILE_FIELDS}
        served = ", ".join(str(entry.get("id")) for entry in entries) or "nothing"
        raise RwkuError(f"{self.what}: {self.base_url} does not serve {self.name!r} (it serves {served}); use one of "
                        "those names, or start the server with this model")

    def describe(self) -> dict[str, Any]:
        """What a unit's provenance records of the server."""
        return {"base_url": self.base_url, "model": self.identity}

    def complete(self, body: dict[str, Any], request: str) -> dict[str, Any]:
        """One completions request (the model's name added) as a plain dict with every field the server sent."""
        standard = {"prompt", "max_tokens", "temperature", "echo", "logprobs"}
        extra = {key: value for key, value in body.items() if key not in standard}
        with endpoint_errors(self.what, self.client, request):
            response = self.client.completions.create(model=self.name, extra_body=extra or None,
                                                      **{key: value for key, value in body.items() if key in standard})
        answer = response.model_dump()
        if not answer.get("choices"):
            raise RwkuError(f"{self.what}: {self.base_url} returned no choice for a {request} request")
        return answer["choices"][0]

    def complete_all(self, bodies: Sequence[dict[str, Any]], request: str, on_batch: Callable[[int], None] | None) -> list[dict[str, Any]]:
        """Every request, ``concurrency`` at a time, answers in order; progress advances as each one returns."""
        def one(body: dict[str, Any]) -> dict[str, Any]:
            choice = self.complete(body, request)
            if on_batch is not None:
                on_batch(1)
            return choice

        if self.options.concurrency <= 1 or len(bodies) <= 1:
            return [one(body) for body in bodies]
        with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
            return list(pool.map(one, bodies))


def is_served(spec: str) -> bool:
    """Whether a model spec names a model behind an OpenAI-compatible server (``openai:NAME``)."""
    return spec.startswith(ENDPOINT_PREFIX)
