"""What an evaluation set is: the data parts it reads, how it is evaluated, where its numbers go in a unit
summary, and which of them are Table-1 columns (with the direction that counts as better).

A set is one module that defines one :class:`EvalSet` and one line in :data:`rwku.evaluation.sets.SETS`, as a
task is one file in lm-evaluation-harness; the engine, the loader, ``--sets``, ``--limit``, the result averages,
Table 1 and the report all read the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple

from rwku.data.schema import Part, TargetData

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext


class Column(NamedTuple):
    """A Table-1 column: header group, label, dotted path in a unit summary, and whether lower is better."""

    group: str
    label: str
    path: str
    lower_is_better: bool


#: ``evaluate(ctx, data) -> (summary, items)``: the set's numbers (a dict or one score) and every scored item.
Evaluator = Callable[["EvalContext", TargetData], tuple[Any, list[dict[str, Any]]]]


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set.

    ``summary_path``/``items_path`` say where its result goes (``"forget"``, or ``"utility.Gen"`` and
    ``"utility.mmlu"`` for a utility set), so stored summaries keep the paper's layout. ``group`` lets ``--sets``
    name several sets at once (``utility``). ``case_study`` marks sets whose items are probes with an output and a
    reference, shown one by one in the report. ``in_all`` False keeps a set out of ``--sets all`` and the default
    (an opt-in set: naming it changes no existing key). ``key`` holds the set's own settings that decide its numbers
    beyond its data (VerbMem's prompt and continuation lengths); they join the unit key when the set is chosen.
    """

    name: str
    parts: tuple[Part, ...]
    evaluate: Evaluator
    summary_path: str
    items_path: str
    columns: tuple[Column, ...] = ()
    group: str | None = None
    case_study: bool = False
    in_all: bool = True
    key: Mapping[str, Any] | None = None
