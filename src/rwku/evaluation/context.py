"""What every evaluator needs: the model and the backend that runs it, how to prompt it, batch size, protocol fixes
and progress."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from rwku.evaluation.protocol import Protocol
from rwku.models.backends import Backend, make_backend
from rwku.models.decoding.generate import decode_continuation
from rwku.models.loading import LoadedModel
from rwku.models.prompting import PromptFormat
from rwku.models.scoring import TokenScores

#: ``progress(description, total)`` returns a context manager yielding ``advance(n)``.
ProgressFactory = Callable[[str, int], Any]


@contextmanager
def no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@dataclass
class EvalContext:
    """A loaded model plus the settings that decide what it is asked and how it is batched: the evaluation's handle.

    Every model call of the evaluators goes through :meth:`generate`, :meth:`score` and :meth:`next_token_probs`,
    which render nothing and run nothing themselves: they encode, show progress, and hand the token ids to the
    ``backend`` (:mod:`rwku.models.backends`; rwku's batched transformers backend unless another is given).
    """

    lm: LoadedModel
    prompts: PromptFormat
    protocol: Protocol = field(default_factory=Protocol)
    batch_size: int = 16
    progress: ProgressFactory = no_progress
    backend: Backend | None = None

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = make_backend(self.lm, batch_size=self.batch_size)

    def official_stop_ids(self, *names: str) -> list[int]:
        """EOS plus ``convert_tokens_to_ids`` of each name, as the official stop lists are built.

        A tokenizer without such a literal token maps it to its unknown id, which then stops generation too
        (id 0, ``<|endoftext|>``, on SmolLM2): that is the official behaviour, kept on purpose.
        """
        tokenizer = self.lm.tokenizer
        ids = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(name) for name in names]
        return sorted({int(i) for i in ids if i is not None})

    def generate(self, description: str, prompts: Sequence[str], max_new_tokens: int, stop_ids: Sequence[int]) -> list[str]:
        """Greedy continuations (decoded, unstripped) of rendered prompts, with a progress bar."""
        return self.generate_ids(description, [self.prompts.encode(p) for p in prompts], max_new_tokens, stop_ids)

    def generate_ids(self, description: str, encoded: Sequence[Sequence[int]], max_new_tokens: int,
                     stop_ids: Sequence[int]) -> list[str]:
        """Greedy continuations of prompts given as token ids (an audit's optimised suffix is tokens, not text)."""
        tokens = self.generate_tokens(description, encoded, max_new_tokens, stop_ids)
        return [decode_continuation(self.lm.tokenizer, p, t) for p, t in zip(encoded, tokens)]

    def generate_tokens(self, description: str, encoded: Sequence[Sequence[int]], max_new_tokens: int,
                        stop_ids: Sequence[int]) -> list[list[int]]:
        """Greedy continuations as token ids, each cut before its first stop id (a set that compares tokens)."""
        with self.progress(description, len(encoded)) as advance:
            return self.backend.generate(description, encoded, max_new_tokens, stop_ids, on_batch=advance)

    def score(self, description: str, sequences: Sequence[Sequence[int]], n_scored: Sequence[int],
              vocab_moments: bool = False, greedy: bool = False) -> list[TokenScores]:
        """Log-probs of the last ``n_scored[i]`` tokens of each sequence (see :func:`score_tokens`); ``greedy``
        adds whether each is the model's argmax prediction."""
        with self.progress(description, len(sequences)) as advance:
            return self.backend.score(description, sequences, n_scored, vocab_moments=vocab_moments, greedy=greedy,
                                      on_batch=advance)

    def next_token_probs(self, description: str, prompts: Sequence[Sequence[int]], candidates: Sequence[int]) -> list[list[float]]:
        """Full-vocabulary next-token probabilities of ``candidates`` after each prompt."""
        with self.progress(description, len(prompts)) as advance:
            return self.backend.next_token_probs(description, prompts, candidates, on_batch=advance)
