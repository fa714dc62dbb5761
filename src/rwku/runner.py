"""``rwku eval``: the original model (optionally with the ICU preamble) evaluated on each target, one unit per
target in ``<out>/<N>_<Name>/``, through the same plan, executors and store as unlearning."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from rwku import __version__
from rwku.data.loader import RwkuData
from rwku.data.schema import Target, TargetData, kinds_field
from rwku.evaluation.context import ProgressFactory
from rwku.evaluation.engine import evaluate_target
from rwku.evaluation.sets import load_target
from rwku.evaluation.settings import RunSettings
from rwku.models.fingerprint import provenance
from rwku.execution.plan import UnitTask, unit_key
from rwku.execution.store import UnitOutput
from rwku.models.loading import LoadedModel, load_model


#: The original model for units that only evaluate it, loaded once per process (a worker keeps it too).
original_model = lru_cache(maxsize=1)(load_model)


def shared_model(run: RunSettings) -> LoadedModel:
    """The process's shared copy of ``run``'s model (:data:`original_model`), loaded as :meth:`RunSettings.load`
    loads a fresh one."""
    return original_model(run.model, **run.load_options())


@dataclass
class EvalJob:
    """What to evaluate and how; every field that decides the numbers goes into each unit's key."""

    run: RunSettings
    data: RwkuData
    targets: Sequence[Target]
    preamble: str | None = None

    def load_all(self) -> dict[int, TargetData]:
        """Read and check every target's data up front, so bad input fails before any model work."""
        return {t.number: load_target(self.data, t, self.run.sets, self.run.limit) for t in self.targets}

    def config(self) -> dict[str, Any]:
        """The readable settings a summary shows (the key decides reuse)."""
        return {"model": self.run.model, **self.run.config(), "preamble": self.preamble, "kernels": self.run.kernels,
                **({"tokenizer": self.run.prompt_tokenizer} if self.run.is_served else {})}

    def tasks(self) -> list[UnitTask]:
        """One unit per target, at the top of the output folder."""
        self.load_all()
        return [UnitTask(run="", slug=t.slug, targets=(t,), job=self, method=None, key=unit_key(self, [t], preamble=self.preamble))
                for t in self.targets]

    def compute(self, task: UnitTask, progress: ProgressFactory) -> UnitOutput:
        lm = shared_model(self.run)
        target = task.targets[0]
        ctx = self.run.context(lm, preamble=self.preamble, progress=progress)
        result = evaluate_target(ctx, load_target(self.data, target, self.run.sets, self.run.limit), self.run.sets)
        summary = {"model": self.run.model, "target": target.name, "target_number": target.number, **kinds_field(task.targets),
                   "rwku_version": __version__,
                   "protocol": self.run.protocol.name, "config": self.config(), "data": self.data.description, "key": task.key,
                   "provenance": {**provenance(lm.device), **({"server": lm.model.describe()} if lm.served else {})},
                   **result.summary}
        return UnitOutput(summary=summary, items={"target": target.name, "config": self.config(), **result.items})
