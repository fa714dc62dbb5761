"""Run evaluations over many targets: resumable, atomic, one result folder per target."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rwku import __version__
from rwku.data.loader import RwkuData
from rwku.data.schema import Target, TargetData
from rwku.evaluation.context import EvalContext
from rwku.evaluation.engine import evaluate_target
from rwku.evaluation.sets import load_target
from rwku.results import ResultStore, average_summaries, json_safe, write_json_atomic


@dataclass
class EvalJob:
    """What to evaluate and how; ``config()`` is stored in every summary and decides whether a result is reusable."""

    model: str
    data: RwkuData
    targets: Sequence[Target]
    sets: Sequence[str]
    limit: int | None = None

    def load_all(self) -> dict[int, TargetData]:
        """Read and check every target's data up front, so bad input fails before any model work."""
        return {t.number: load_target(self.data, t, self.sets, self.limit) for t in self.targets}

    def config(self, ctx: EvalContext) -> dict[str, Any]:
        return {
            "model": self.model,
            "sets": list(self.sets),
            "limit": self.limit,
            "protocol": sorted(ctx.protocol.fixes),
            "prompt_format": ctx.prompts.style,
            "preamble": ctx.prompts.preamble,
        }


def same_config(summary: dict[str, Any] | None, config: dict[str, Any]) -> bool:
    """Whether a stored summary was made with ``config`` (compared as JSON: tuples and lists are alike)."""
    return summary is not None and summary.get("config") == json.loads(json.dumps(json_safe(config)))


def run_eval(
    ctx: EvalContext,
    job: EvalJob,
    out: Path,
    *,
    force: bool = False,
    loaded: dict[int, TargetData] | None = None,
    on_target: Callable[[Target, dict[str, Any], bool], None] | None = None,
) -> dict[str, Any]:
    """Evaluate each target (skipping ones already stored with the same config), then store the average.

    ``loaded`` is the output of :meth:`EvalJob.load_all` when the caller validated the data already;
    ``on_target(target, summary, reused)`` is called after each target, e.g. to print its row.
    """
    store = ResultStore(out)
    config = job.config(ctx)
    summaries = []
    with ctx.progress("targets", len(job.targets)) as advance:
        for target in job.targets:
            summary = store.load_summary(target.slug)
            reused = not force and same_config(summary, config)
            if not reused:
                data = loaded[target.number] if loaded else load_target(job.data, target, job.sets, job.limit)
                result = evaluate_target(ctx, data, job.sets)
                summary = {
                    "model": job.model,
                    "target": target.name,
                    "target_number": target.number,
                    "rwku_version": __version__,
                    "protocol": ctx.protocol.name,
                    "config": config,
                    "data": job.data.description,
                    **result.summary,
                }
                store.save(target.slug, summary, {"target": target.name, "config": config, **result.items})
            summaries.append(summary)
            if on_target is not None:
                on_target(target, summary, reused)
            advance(1)
    average = {
        "model": job.model,
        "targets": [t.name for t in job.targets],
        "rwku_version": __version__,
        "protocol": ctx.protocol.name,
        "config": config,
        **average_summaries(summaries),
    }
    write_json_atomic(out / "summary.json", average)
    return average
