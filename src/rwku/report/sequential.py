"""Sequential runs (``--setting sequential``) in the report: a table of every target's forget score after each step,
and a figure of the same (forget All of each target across steps; neighbour and utility across steps).

Step 0 is the original model (the folder's ``before`` units); step k reads the scores every target got on the model
step k left (``sequential.targets`` of the step's summary). Utility is shown where the step evaluated it (the last
step and the chosen ``utility_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from rwku.report.collect import Run
from rwku.results import get_path

FORGET = "forget.All"
NEIGHBOR = "neighbor.All"


@dataclass
class Step:
    """One row: the step (0 = before), the target it unlearned, every target's summary scores by slug."""

    step: int
    unlearned: str
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    def value(self, slug: str, path: str) -> float | None:
        found = get_path(self.scores.get(slug) or {}, path)
        return None if found is None else float(found)

    def mean(self, path: str) -> float | None:
        values = [v for v in (self.value(slug, path) for slug in self.scores) if v is not None]
        return sum(values) / len(values) if values else None


def sequential_runs(runs: Sequence[Run]) -> list[Run]:
    return [r for r in runs if r.setting == "sequential"]


def steps_of(run: Run, runs: Sequence[Run]) -> tuple[list[str], list[Step]]:
    """The run's targets (slugs, in order) and its steps, step 0 from the folder's "before" units."""
    summaries = sorted((u.summary for u in run.units.values()), key=lambda s: (s.get("sequential") or {}).get("step", 0))
    steps = [Step(int(s["sequential"]["step"]), str(s["sequential"].get("target", "")), dict(s["sequential"].get("targets") or {}))
             for s in summaries if isinstance(s.get("sequential"), dict)]
    slugs = list(steps[-1].scores) if steps else []
    before = next((b for b in runs if b.is_before and b.folder == run.folder), None)
    if before is not None and slugs and all(slug in before.units for slug in slugs):
        steps.insert(0, Step(0, "(original)", {slug: before.units[slug].summary for slug in slugs}))
    return slugs, steps


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def to_markdown(runs: Sequence[Run], utility: str = "utility.Gen") -> str:
    """Per sequential run: one row per step, forget All of each target (↓), the mean neighbour All (↑) and the
    utility column where it was evaluated."""
    parts = []
    for run in sequential_runs(runs):
        slugs, steps = steps_of(run, runs)
        if not steps:
            continue
        head = ["step", "unlearned", *[f"forget All ↓ {slug}" for slug in slugs], "neighbor All ↑ (mean)", f"{utility} ↑"]
        lines = [f"### {run.label}", "", "| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 2)]
        for step in steps:
            row = [str(step.step), step.unlearned, *[cell(step.value(slug, FORGET)) for slug in slugs],
                   cell(step.mean(NEIGHBOR)), cell(step.mean(utility))]
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines))
    if not parts:
        return ""
    return ("Sequential unlearning: every target's scores after each step (step 0: the original model); utility where "
            "the step evaluated it.\n\n" + "\n\n".join(parts) + "\n")


def to_json(runs: Sequence[Run], utility: str = "utility.Gen") -> list[dict[str, Any]]:
    out = []
    for run in sequential_runs(runs):
        slugs, steps = steps_of(run, runs)
        out.append({"run": run.label, "targets": slugs, "steps": [
            {"step": s.step, "unlearned": s.unlearned, "forget_all": {slug: s.value(slug, FORGET) for slug in slugs},
             "neighbor_all_mean": s.mean(NEIGHBOR), "utility": s.mean(utility)} for s in steps]})
    return out


def figure(runs: Sequence[Run], utility: str = "utility.Gen") -> Any:
    """One row per sequential run: forget All of each target across steps (left); mean neighbour All and the
    utility column across steps (right). None without a sequential run."""
    chosen = [(run, *steps_of(run, runs)) for run in sequential_runs(runs)]
    chosen = [c for c in chosen if c[2]]
    if not chosen:
        return None
    from rwku.report.figures import PANEL_SIZE, plt

    fig, axes = plt.subplots(len(chosen), 2, figsize=(2 * PANEL_SIZE[0], PANEL_SIZE[1] * len(chosen)), squeeze=False)
    for (run, slugs, steps), (left, right) in zip(chosen, axes):
        xs = [s.step for s in steps]
        for slug in slugs:
            left.plot(xs, [s.value(slug, FORGET) for s in steps], marker="o", label=slug)
        left.set_title(f"{run.label}: forget All per target ↓", fontsize="medium")
        right.plot(xs, [s.mean(NEIGHBOR) for s in steps], marker="o", label="neighbor All (mean) ↑")
        points = [(s.step, s.mean(utility)) for s in steps if s.mean(utility) is not None]
        if points:
            right.plot(*zip(*points), marker="s", linestyle="--", label=f"{utility} ↑")
        right.set_title(f"{run.label}: locality and utility", fontsize="medium")
        for ax in (left, right):
            ax.set_xlabel("step (targets unlearned so far)")
            ax.set_xticks(xs)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
