"""A model behind an OpenAI-compatible server (vLLM, SGLang, llama.cpp's ``llama-server``, ``rwku serve``):
``--model openai:NAME``, the server from ``OPENAI_BASE_URL``, the key from ``OPENAI_API_KEY``.

rwku renders and encodes every prompt itself with the model's tokenizer (``--tokenizer``) and sends the token
ids, so the server sees exactly the tokens the ``hf`` backend would run. Every request is one completions call:

* ``generate``: greedy (temperature 0), ``max_tokens`` the official limit, the stop ids as ``stop_token_ids``
  with ``ignore_eos`` (vLLM's and SGLang's fields; a server that ignores them runs to the limit), and each
  continuation cut before its first stop id here, whatever the server did. The tokens are read from the
  ``token_ids`` the server returns (vLLM's ``return_token_ids``), else from log-prob tokens it sends written as
  ``token_id:N`` (vLLM's ``return_tokens_as_token_ids``), else re-encoded from the text (checked to decode back);
* ``score``: the prompt's own log-probs, ``echo`` with ``logprobs`` (or vLLM's ``prompt_logprobs`` when the server
  returns those), token by token; the server must return one per token sent, for the same ids; ``greedy`` reads
  the top-1 alternative; the vocabulary moments Min-K%++ needs come only from a server that returns them
  (``rwku serve`` does, as ``vocab_moments``), otherwise they are left out and the attack is reported missing;
* ``next_token_probs`` (MMLU's letters): the top log-probs of one generated token; a candidate outside the top
  ``top_logprobs`` is scored exactly through ``echo`` of the prompt plus that token, never guessed; a server that
  returns fewer alternatives than asked is a one-line error naming the option that fixes it.

Requests run ``concurrency`` at a time; the ``openai`` client retries 429/5xx, timeouts and lost connections
with backoff. Corpus sampling and reading hidden states need the weights: a served model refuses them.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from rwku.errors import RwkuError
from rwku.models.backends.base import Backend, OnBatch
from rwku.models.backends.official import cut_at_stop
from rwku.models.endpoint import ServedModel
from rwku.models.loading import LoadedModel
from rwku.models.scoring import TokenScores


def token_id(label: str) -> int | None:
    """The id in a log-prob token written ``token_id:N`` (vLLM's ``return_tokens_as_token_ids``), else None."""
    if label.startswith("token_id:") and label[len("token_id:"):].lstrip("-").isdigit():
        return int(label[len("token_id:"):])
    return None


class ServedBackend(Backend):
    """The requests of a served model, answered by its server (see the module docstring)."""

    name = "served"

    def __init__(self, lm: LoadedModel, batch_size: int = 16, device: Any = None):
        if not isinstance(lm.model, ServedModel):
            raise RwkuError(f"backend served: {lm.name} is a local model; serve it (rwku serve) and use --model openai:NAME")
        super().__init__(lm, batch_size=batch_size, device="cpu")
        self.served: ServedModel = lm.model

    # ------------------------------------------------------------------ generation

    def generate(self, task: str, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int],
                 on_batch: OnBatch = None) -> list[list[int]]:
        bodies = [{"prompt": list(prompt), "max_tokens": max_new_tokens, "temperature": 0, "stop_token_ids": list(stop_ids),
                   "ignore_eos": True, "return_token_ids": True, "skip_special_tokens": False} for prompt in prompts]
        choices = self.served.complete_all(bodies, task, on_batch)
        stops = set(stop_ids)
        return [cut_at_stop(self.generated_ids(choice, task), stops)[:max_new_tokens] for choice in choices]

    def generated_ids(self, choice: dict[str, Any], task: str) -> list[int]:
        """The generated token ids of a choice: as the server returned them, else the text re-encoded (refused
        when it does not decode back to the same text, which would change the output)."""
        if choice.get("token_ids") is not None:
            return [int(t) for t in choice["token_ids"]]
        labels = (choice.get("logprobs") or {}).get("tokens") or []
        ids = [token_id(label) for label in labels]
        if labels and all(i is not None for i in ids):
            return ids  # type: ignore[return-value]
        text = choice.get("text") or ""
        encoded = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if self.tokenizer.decode(encoded) != text:
            raise RwkuError(f"{self.served.what}: the server returned no token ids for a {task} request and its text does "
                            "not re-encode exactly; use a server that returns them (vLLM return_token_ids, rwku serve)")
        return encoded

    # ------------------------------------------------------------------ scoring

    def score(self, task: str, sequences: Sequence[Sequence[int]], n_scored: Sequence[int], vocab_moments: bool = False,
              greedy: bool = False, on_batch: OnBatch = None) -> list[TokenScores]:
        bodies = [{"prompt": list(sequence), "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1 if greedy else 0,
                   "return_tokens_as_token_ids": True, **({"vocab_moments": True} if vocab_moments else {})}
                  for sequence in sequences]
        choices = self.served.complete_all(bodies, task, on_batch)
        return [self.prompt_scores(choice, list(sequence), n, vocab_moments, greedy, task)
                for choice, sequence, n in zip(choices, sequences, n_scored)]

    def prompt_scores(self, choice: dict[str, Any], sequence: list[int], n: int, vocab_moments: bool, greedy: bool,
                      task: str) -> TokenScores:
        """The last ``n`` tokens' scores from one echoed prompt; the server must have scored exactly ``sequence``."""
        logprobs, alternatives = self.echoed(choice, sequence, task)
        scored = range(len(sequence) - n, len(sequence)) if n > 0 else range(0)
        scores = TokenScores(logprobs=[float(logprobs[i]) for i in scored])
        if greedy:
            scores.greedy = [self.is_top(alternatives[i], sequence[i], task) for i in scored]
        moments = choice.get("vocab_moments") if vocab_moments else None
        if moments is not None:
            scores.mean = [float(moments["mean"][i]) for i in scored]
            scores.std = [float(moments["std"][i]) for i in scored]
        return scores

    def echoed(self, choice: dict[str, Any], sequence: list[int], task: str) -> tuple[list[float], list[Any]]:
        """Per prompt token its log-prob and its top alternatives, from vLLM's ``prompt_logprobs`` or from the
        echoed ``logprobs``; the first token has none (it is not predicted)."""
        if choice.get("prompt_logprobs") is not None:
            entries = choice["prompt_logprobs"][:len(sequence)]
            if len(entries) < len(sequence):
                raise self.too_few_scored(len(entries), len(sequence), task)
            logprobs = [math.nan] + [entry[str(token)]["logprob"] for entry, token in zip(entries[1:], sequence[1:])]
            alternatives = [None] + [{int(k): v["logprob"] for k, v in entry.items()} for entry in entries[1:]]
            return logprobs, alternatives
        echoed = choice.get("logprobs") or {}
        labels, values = echoed.get("tokens") or [], echoed.get("token_logprobs") or []
        if len(labels) < len(sequence) or len(values) < len(sequence):
            raise self.too_few_scored(min(len(labels), len(values)), len(sequence), task)
        returned = [token_id(label) for label in labels[:len(sequence)]]
        if all(i is not None for i in returned) and returned != sequence:
            first = next(i for i, (a, b) in enumerate(zip(returned, sequence)) if a != b)
            raise RwkuError(f"{self.served.what}: the server scored other tokens than rwku sent ({task}, position {first}: "
                            f"{returned[first]} for {sequence[first]}); does it re-tokenise prompts?")
        tops = (echoed.get("top_logprobs") or [None] * len(sequence))[:len(sequence)]
        alternatives = [{self.alternative_id(k): v for k, v in top.items()} if top else None for top in tops]
        return [math.nan if v is None else v for v in values[:len(sequence)]], alternatives

    def too_few_scored(self, returned: int, sent: int, task: str) -> RwkuError:
        return RwkuError(f"{self.served.what}: the server returned {returned} prompt log-probs for {sent} tokens ({task}); "
                         "it must return the prompt's log-probs with echo (vLLM and rwku serve do)")

    def alternative_id(self, label: str) -> int:
        """The token id of a top-log-prob key: ``token_id:N``, else the one token that decodes to the label."""
        found = token_id(label)
        if found is not None:
            return found
        ids = self.tokenizer.convert_tokens_to_ids([label])
        if ids and ids[0] is not None and ids[0] != self.tokenizer.unk_token_id:
            return int(ids[0])
        encoded = self.tokenizer(label, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise RwkuError(f"{self.served.what}: cannot tell which token the server's top log-prob {label!r} is; use a "
                            "server that writes them as token ids (vLLM return_tokens_as_token_ids, rwku serve)")
        return int(encoded[0])

    def is_top(self, alternatives: dict[int, float] | None, token: int, task: str) -> bool:
        if not alternatives:
            raise RwkuError(f"{self.served.what}: the server returned no top log-prob for a scored token ({task}); "
                            "it must return top_logprobs with echo")
        return max(alternatives, key=alternatives.__getitem__) == token

    # ------------------------------------------------------------------ next-token probabilities

    def next_token_probs(self, task: str, prompts: Sequence[Sequence[int]], candidates: Sequence[int],
                         on_batch: OnBatch = None) -> list[list[float]]:
        k = self.served.options.top_logprobs
        bodies = [{"prompt": list(prompt), "max_tokens": 1, "temperature": 0, "logprobs": k, "ignore_eos": True,
                   "return_tokens_as_token_ids": True} for prompt in prompts]
        choices = self.served.complete_all(bodies, task, on_batch)
        found = [self.first_top_logprobs(choice, k, task) for choice in choices]
        missing = [(row, c) for row, top in enumerate(found) for c in candidates if c not in top]
        if missing:  # outside the top k: scored exactly as the prompt's next token
            exact = self.score(f"{task} (letters outside the top {k})", [list(prompts[row]) + [c] for row, c in missing],
                               [1] * len(missing))
            for (row, c), scores in zip(missing, exact):
                found[row][c] = scores.logprobs[0]
        return [[math.exp(top[c]) for c in candidates] for top in found]

    def first_top_logprobs(self, choice: dict[str, Any], k: int, task: str) -> dict[int, float]:
        """The top log-probs of the first generated token, by token id; fewer than ``k`` is a one-line error."""
        tops = (choice.get("logprobs") or {}).get("top_logprobs") or []
        top = tops[0] if tops else None
        if not top or len(top) < k:
            raise RwkuError(f"{self.served.what}: the server returned {len(top or {})} top log-probs where {k} were asked "
                            f"({task}); start vLLM with --max-logprobs {k} (or raise your server's limit), or ask for fewer "
                            "with --top-logprobs")
        return {self.alternative_id(label): value for label, value in top.items()}

    # ------------------------------------------------------------------ what needs the weights

    def sample(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int],
               generators: Sequence[torch.Generator], temperature: float, top_p: float,
               on_batch: OnBatch = None) -> list[list[int]]:
        raise self.needs_weights("writing a corpus (rwku's seeded per-row sampling)")

    def layer_states(self, prompts: Sequence[Sequence[int]], modules: Sequence[Any]) -> torch.Tensor:
        raise self.needs_weights("reading hidden states (RepE)")

    def needs_weights(self, doing: str) -> RwkuError:
        return RwkuError(f"{self.served.what}: {doing} needs the model's weights, which a served model does not give; "
                         "unlearn a local copy (--model FOLDER --save-model) and serve the result to evaluate it")
