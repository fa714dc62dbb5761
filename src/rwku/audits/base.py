"""What an audit is given and what it returns: the unlearned model exactly as it is evaluated (weights, ICU
preamble, RepE hooks), the unit's forget and neighbour probes, the original model for comparison, and a result
whose numbers every audit reports the same way.

Every audit reports, on the same probes: the score under the attack, the score of the unlearned model without it,
the score of the original model, and the **recovered %** (:func:`recovered_percent`), plus the neighbour All
under the attack (an attack that restores every fact, related or not, is no targeted recovery).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rwku.data.schema import Probe, TargetData
from rwku.evaluation.context import EvalContext, ProgressFactory, no_progress
from rwku.evaluation.metrics import mean_or_none
from rwku.evaluation.sets.probes import evaluate_probes
from rwku.evaluation.settings import RunSettings
from rwku.models.loading import LoadedModel

#: Below this gap (ROUGE-L points, or lens points) between the original and the unlearned model there is nothing
#: measurable to recover: recovered % is "n/a" (the RWKU score leaves such targets out for the same reason).
MIN_GAP = 5.0


def recovered_percent(attack: float | None, unlearned: float | None, original: float | None) -> float | None:
    """(attack − unlearned) / (original − unlearned) × 100: the share of what unlearning removed that the attack
    brings back (100 = all of it, 0 = none, negative = the attack removed more); None ("n/a") when a score is
    missing or the original model is under :data:`MIN_GAP` points above the unlearned one."""
    if attack is None or unlearned is None or original is None or original - unlearned < MIN_GAP:
        return None
    return (attack - unlearned) / (original - unlearned) * 100


@dataclass
class AuditSubject:
    """One unlearned model to audit, as it is evaluated, with the unit's probes and the original model.

    ``model`` carries any LoRA adapter and RepE hook; ``preamble`` is ICU's; ``load_original`` returns a fresh,
    unmodified original model (loaded at most once, on first use). ``control_probes`` are another target's forget
    probes (relearning's control), ``settings`` the resolved :class:`~rwku.audits.settings.AuditSettings`, ``run``
    how the unit was evaluated (prompt format, protocol, batch size), which every audit's evaluation keeps.
    """

    lm: LoadedModel
    model: Any
    preamble: str | None
    method: str
    data: TargetData
    settings: Any
    load_original: Callable[[], Any]
    control_probes: Callable[[], list[Probe]] = lambda: []
    run: RunSettings = field(default_factory=RunSettings)
    progress: ProgressFactory = no_progress
    baselines: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    _original: Any = None

    @property
    def forget(self) -> list[Probe]:
        return list(self.data["forget"])

    @property
    def neighbor(self) -> list[Probe]:
        return list(self.data["neighbor"])

    def original(self) -> Any:
        if self._original is None:
            self._original = self.load_original()
        return self._original

    def context(self, model: Any, preamble: str | None) -> EvalContext:
        """An evaluation context for ``model`` with the run's prompt format, protocol and batch size."""
        return self.run.context(self.lm, model=model, preamble=preamble, progress=self.progress)

    def evaluate(self, model: Any, probes: Sequence[Probe], set_name: str, as_original: bool = False) -> list[dict[str, Any]]:
        """Every probe answered and scored (ROUGE-L recall) by ``model``: an attacked copy of the unlearned model
        keeps its preamble (ICU); one of the original model (``as_original``) has none."""
        if not probes:
            return []
        return evaluate_probes(self.context(model, None if as_original else self.preamble), probes, set_name)[1]

    def baseline(self, which: str, set_name: str) -> list[dict[str, Any]]:
        """The unlearned (``which="unlearned"``: weights, preamble, hooks) or original model's scored items on
        every probe of ``set_name``, computed once per subject and shared by the audits."""
        if (which, set_name) not in self.baselines:
            probes = self.forget if set_name == "forget" else self.neighbor
            model = self.model if which == "unlearned" else self.original()
            self.baselines[(which, set_name)] = self.evaluate(model, probes, set_name, as_original=which == "original")
        return self.baselines[(which, set_name)]

    def seed_baseline(self, set_name: str, items: list[dict]) -> None:
        """Reuse the unit's own evaluation of the unlearned model (same probes, same settings) as its baseline."""
        self.baselines[("unlearned", set_name)] = items


def mean_score(items: Sequence[dict[str, Any]], indices: Sequence[int] | None = None) -> float | None:
    """Mean ROUGE-L ×100 of ``items`` (only those at ``indices``, when given)."""
    chosen = items if indices is None else [items[i] for i in indices]
    return mean_or_none([i["score"] for i in chosen], 100)


def scores(attack: float | None, unlearned: float | None, original: float | None,
           neighbor_attack: float | None, neighbor_unlearned: float | None) -> dict[str, Any]:
    """The numbers every audit reports, in one layout (what the report reads)."""
    return {"forget": {"attack": attack, "unlearned": unlearned, "original": original,
                       "recovered": recovered_percent(attack, unlearned, original)},
            "neighbor": {"attack": neighbor_attack, "unlearned": neighbor_unlearned}}


def probe_rows(attacked: Sequence[dict], unlearned: Sequence[dict], original: Sequence[dict], **extra: Sequence[Any]) -> list[dict]:
    """Per probe: what it asks, its answer, the output and score under the attack, beside the unlearned and the
    original model's (``extra`` adds per-probe fields such as the suffix)."""
    rows = []
    for index, (hit, before, orig) in enumerate(zip(attacked, unlearned, original)):
        row = {key: hit.get(key) for key in ("level", "type", "query", "reference", "output", "score")}
        row.update({"unlearned_output": before.get("output"), "unlearned_score": before.get("score"),
                    "original_score": orig.get("score")})
        row.update({name: values[index] for name, values in extra.items()})
        rows.append(row)
    return rows


@dataclass
class AuditResult:
    """``summary``: :func:`scores` plus the audit's own numbers, controls and notes; ``items``: every probe."""

    summary: dict[str, Any]
    items: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Audit:
    """One registered audit: its name, what it does, which settings it reads (they join the unit key) and ``run``."""

    name: str
    description: str
    settings: tuple[str, ...]
    run: Callable[[AuditSubject], AuditResult]


def plain_copy(model: Any) -> Any:
    """A deep copy of ``model`` with any LoRA adapter merged into the weights (RepE hooks travel with the copy);
    the model still to be evaluated is never touched."""
    clone = copy.deepcopy(model)
    if hasattr(clone, "merge_and_unload"):
        clone = clone.merge_and_unload()
    return clone.eval()
