"""``rwku eval``: the original model (optionally with the ICU preamble) evaluated on each target, one unit per
target in ``<out>/<N>_<Name>/``, through the same plan, executors and store as unlearning."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

from rwku import __version__
from rwku.data.loader import RwkuData
from rwku.data.schema import Target, TargetData, kinds_field
from rwku.evaluation.context import EvalContext, ProgressFactory
from rwku.evaluation.engine import evaluate_target
from rwku.evaluation.protocol import Protocol
from rwku.evaluation.sets import DEFAULT_SETS, load_target
from rwku.models.fingerprint import provenance
from rwku.execution.plan import UnitTask, unit_key
from rwku.execution.store import UnitOutput
from rwku.models.endpoint import ServedOptions, is_served
from rwku.models.loading import LoadedModel, load_model
from rwku.models.prompting import PromptFormat


@lru_cache(maxsize=1)
def original_model(spec: str, device: str, dtype: str, kernels: str = "invariant", tokenizer: str | None = None,
                   served: ServedOptions = ServedOptions()) -> LoadedModel:
    """The original model for units that only evaluate it, loaded once per process (a worker keeps it too);
    ``tokenizer`` and ``served`` are for a served model (``openai:NAME``) alone."""
    return load_model(spec, device=device, dtype=dtype, kernels=kernels, tokenizer=tokenizer, served=served)


@dataclass
class EvalJob:
    """What to evaluate and how; every field that decides the numbers goes into each unit's key."""

    model: str
    data: RwkuData
    targets: Sequence[Target]
    sets: Sequence[str] = DEFAULT_SETS
    limit: int | None = None
    protocol: Protocol = field(default_factory=Protocol)
    prompt_format: str = "chat"
    preamble: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32
    kernels: str = "invariant"
    tokenizer: str | None = None  # what renders a served model's prompts (openai:NAME); a local model has its own
    served: ServedOptions = field(default_factory=ServedOptions)  # how a served model's requests are sent

    def load_all(self) -> dict[int, TargetData]:
        """Read and check every target's data up front, so bad input fails before any model work."""
        return {t.number: load_target(self.data, t, self.sets, self.limit) for t in self.targets}

    def config(self) -> dict[str, Any]:
        """The readable settings a summary shows (the key decides reuse)."""
        return {"model": self.model, "sets": list(self.sets), "limit": self.limit, "protocol": sorted(self.protocol.fixes),
                "prompt_format": self.prompt_format, "preamble": self.preamble, "kernels": self.kernels,
                **({"tokenizer": self.tokenizer or self.model.split(":", 1)[1]} if is_served(self.model) else {})}

    def tasks(self) -> list[UnitTask]:
        """One unit per target, at the top of the output folder."""
        self.load_all()
        return [UnitTask(run="", slug=t.slug, targets=(t,), job=self, method=None, key=unit_key(self, [t], preamble=self.preamble))
                for t in self.targets]

    def compute(self, task: UnitTask, progress: ProgressFactory) -> UnitOutput:
        lm = original_model(self.model, self.device, self.dtype, self.kernels, self.tokenizer, self.served)
        target = task.targets[0]
        prompts = PromptFormat(lm.tokenizer, style=self.prompt_format, preamble=self.preamble,
                               single_bos=self.protocol.has("single-bos"))
        ctx = EvalContext(lm=lm, prompts=prompts, protocol=self.protocol, batch_size=self.batch_size, progress=progress)
        result = evaluate_target(ctx, load_target(self.data, target, self.sets, self.limit), self.sets)
        summary = {"model": self.model, "target": target.name, "target_number": target.number, **kinds_field(task.targets),
                   "rwku_version": __version__,
                   "protocol": self.protocol.name, "config": self.config(), "data": self.data.description, "key": task.key,
                   "provenance": {**provenance(lm.device), **({"server": lm.model.describe()} if lm.served else {})},
                   **result.summary}
        return UnitOutput(summary=summary, items={"target": target.name, "config": self.config(), **result.items})
