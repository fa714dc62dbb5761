"""The model-execution seam: every model call of the evaluation, the corpus writer and RepE's reading pass.

A backend answers five requests on token ids, whatever way it runs the model: greedy continuations
(``generate``), log-probs of given tokens (``score``), next-token probabilities of a few candidates
(``next_token_probs``), seeded nucleus sampling (``sample``) and the output of given modules at the last token
(``layer_states``). Callers never touch the model; rendering, encoding, decoding and progress stay with them.

Every request runs under the backend's kernel mode (:func:`kernel_settings`), so the numbers a run records were
produced the way its key says.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch

from rwku.models.loading import LoadedModel, check_kernels
from rwku.models.scoring import TokenScores

OnBatch = Callable[[int], None] | None


@contextmanager
def kernel_settings(kernels: str) -> Iterator[None]:
    """torch's GPU kernel switches for one request, restored afterwards.

    ``invariant``: no TF32 (float32 matmuls and convolutions keep their 24-bit mantissa) and deterministic,
    non-autotuned cuDNN; the model runs in float32 (:func:`rwku.models.loading.pick_dtype`). ``fast``: TF32
    allowed. On a CPU none of these switches does anything.
    """
    check_kernels(kernels)
    fast = kernels == "fast"
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = fast
    torch.backends.cudnn.deterministic = not fast
    torch.backends.cudnn.benchmark = saved[3] and fast
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
         torch.backends.cudnn.benchmark) = saved


def under_kernels(request: Callable) -> Callable:
    """Run a backend request under the backend's kernel mode."""

    @functools.wraps(request)
    def run(self: "Backend", *args: Any, **kwargs: Any) -> Any:
        with kernel_settings(self.kernels):
            return request(self, *args, **kwargs)

    return run


class Backend(ABC):
    """One way of running a loaded model. ``task`` names the request ("forget probes", "MIA forget", "MMLU"),
    which a backend may use to batch as the code it imitates did; ``batch_size`` is rows per forward pass."""

    name: ClassVar[str]

    def __init__(self, lm: LoadedModel, batch_size: int = 16, device: Any = None):
        self.model, self.tokenizer, self.kernels = lm.model, lm.tokenizer, lm.kernels
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else lm.device

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @abstractmethod
    def generate(self, task: str, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int],
                 on_batch: OnBatch = None) -> list[list[int]]:
        """Greedy continuations, each cut before its first stop id."""

    @abstractmethod
    def score(self, task: str, sequences: Sequence[Sequence[int]], n_scored: Sequence[int], vocab_moments: bool = False,
              greedy: bool = False, on_batch: OnBatch = None) -> list[TokenScores]:
        """Log-probs of the last ``n_scored[i]`` tokens of each sequence (see :func:`rwku.models.scoring.score_tokens`)."""

    @abstractmethod
    def next_token_probs(self, task: str, prompts: Sequence[Sequence[int]], candidates: Sequence[int],
                         on_batch: OnBatch = None) -> list[list[float]]:
        """Full-vocabulary next-token probabilities of ``candidates`` after each prompt."""

    @abstractmethod
    def sample(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int],
               generators: Sequence[torch.Generator], temperature: float, top_p: float,
               on_batch: OnBatch = None) -> list[list[int]]:
        """Nucleus-sampled continuations; row i draws only from ``generators[i]``."""

    @abstractmethod
    def layer_states(self, prompts: Sequence[Sequence[int]], modules: Sequence[Any]) -> torch.Tensor:
        """The output of each of ``modules`` at each prompt's last token: [prompts, modules, hidden], float32."""
