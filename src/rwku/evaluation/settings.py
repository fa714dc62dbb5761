"""How a model is run and evaluated: one settings type that every job embeds (``job.run``).

``rwku eval``, ``unlearn``, ``audit`` and ``memorization`` all load a model somewhere, run it under a kernel mode
and a batch size, prompt it in one format under the protocol's fixes, and evaluate some sets with a limit. Those
settings live here once, with their defaults (the command line takes its defaults from them), the one way a model
is loaded from them (:meth:`RunSettings.load`) and the one way an evaluation context is made from them
(:meth:`RunSettings.context`); :func:`rwku.execution.plan.run_sections` turns them into a unit key's ``model`` and
``eval`` sections.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

from rwku.evaluation.context import EvalContext, ProgressFactory, no_progress
from rwku.evaluation.protocol import Protocol
from rwku.evaluation.sets import DEFAULT_SETS
from rwku.models.endpoint import ServedOptions, endpoint_name, is_served
from rwku.models.loading import DEFAULT_MODEL, LoadedModel, load_model
from rwku.models.prompting import PromptFormat


@dataclass(frozen=True)
class RunSettings:
    """The model and how it runs and is evaluated; everything here but ``served`` can decide a number, and the
    unit key holds what does (``execution/plan.run_sections``).

    ``tokenizer`` and ``served`` are for a served model (``openai:NAME``) alone: what renders its prompts (default
    NAME) and how its requests are sent. ``limit`` keeps the first N items of every evaluation part.
    """

    model: str = DEFAULT_MODEL
    sets: Sequence[str] = DEFAULT_SETS
    limit: int | None = None
    protocol: Protocol = field(default_factory=Protocol)
    prompt_format: str = "chat"
    device: str = "auto"
    dtype: str = "auto"
    kernels: str = "invariant"
    batch_size: int = 32
    tokenizer: str | None = None
    served: ServedOptions = field(default_factory=ServedOptions)

    @property
    def is_served(self) -> bool:
        return is_served(self.model)

    @property
    def prompt_tokenizer(self) -> str:
        """The model spec whose tokenizer renders a served model's prompts (``--tokenizer``, default its name)."""
        return self.tokenizer or endpoint_name(self.model, "--model")

    def with_sets(self, sets: Sequence[str]) -> "RunSettings":
        return dataclasses.replace(self, sets=tuple(sets))

    def load_options(self) -> dict[str, Any]:
        """What :func:`rwku.models.loading.load_model` takes besides the spec: a cache of loaded models keys on it."""
        return {"device": self.device, "dtype": self.dtype, "kernels": self.kernels, "tokenizer": self.tokenizer,
                "served": self.served}

    def load(self, spec: str | None = None) -> LoadedModel:
        """A fresh copy of the model (or of ``spec``, another model run the same way: an audit's original)."""
        return load_model(spec or self.model, **self.load_options())

    def prompts(self, tokenizer: Any, preamble: str | None = None) -> PromptFormat:
        """The run's prompt format (``single-bos`` is a protocol fix that decides how chat prompts start)."""
        return PromptFormat(tokenizer, style=self.prompt_format, preamble=preamble,
                            single_bos=self.protocol.has("single-bos"))

    def context(self, lm: LoadedModel, model: Any = None, preamble: str | None = None,
                progress: ProgressFactory = no_progress) -> EvalContext:
        """The evaluation context of ``lm`` (or of ``model``, other weights under ``lm``'s tokenizer: an unlearned
        or attacked copy) with the run's prompts, protocol and batch size; ``preamble`` is ICU's."""
        if model is not None:
            lm = dataclasses.replace(lm, model=model)
        return EvalContext(lm=lm, prompts=self.prompts(lm.tokenizer, preamble), protocol=self.protocol,
                           batch_size=self.batch_size, progress=progress)

    def config(self) -> dict[str, Any]:
        """The readable evaluation settings a summary shows after the model (the key decides reuse)."""
        return {"sets": list(self.sets), "limit": self.limit, "protocol": sorted(self.protocol.fixes),
                "prompt_format": self.prompt_format}
