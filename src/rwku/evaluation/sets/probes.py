"""Forget and neighbour probes (efficacy and locality): greedy answers scored by ROUGE-L recall.

Two sets share this module: ``forget`` (FB, QA and the nine adversarial attack types; lower is better) and
``neighbor`` (FB and QA about people related to the target; higher is better).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rwku.data.schema import ATTACK_TYPES, LEVEL_NAMES, Part, Probe, count_probes, first_per_level, normalize_attack
from rwku.evaluation.metrics import mean_or_none, rouge_l_recall
from rwku.evaluation.protocol import (
    AFFIRMATIVE_TEMPLATE,
    FB_TEMPLATE,
    INCONTEXT_TEMPLATE,
    NO_ANSWER,
    PROBE_MAX_NEW_TOKENS,
    PROBE_PREFILL,
    QA_TEMPLATE,
)
from rwku.evaluation.sets.base import Column, EvalSet

if TYPE_CHECKING:
    from rwku.evaluation.context import EvalContext

FORGET_PART = Part("forget", ("forget_level1", "forget_level2", "forget_level3"), Probe.from_json, first_per_level, count_probes)
NEIGHBOR_PART = Part("neighbor", ("neighbor_level1", "neighbor_level2"), Probe.from_json, first_per_level, count_probes)


def probe_prompt(ctx: "EvalContext", probe: Probe) -> str:
    """The official prompt of a probe: FB/QA wording, the two attack-type exceptions, ``Answer:`` prefill."""
    if probe.level == "1":
        text, prefill = FB_TEMPLATE.format(probe.query), PROBE_PREFILL
    elif probe.level == "3" and probe.type == "affirmative suffix":
        text, prefill = AFFIRMATIVE_TEMPLATE.format(probe.query), ""
    elif probe.level == "3" and probe.type == "incontext learning":
        text, prefill = INCONTEXT_TEMPLATE.format(probe.query), PROBE_PREFILL
    else:
        text, prefill = QA_TEMPLATE.format(probe.query), PROBE_PREFILL
    return ctx.prompts.render(text, probe.subject) + prefill


def clean_output(ctx: "EvalContext", raw: str) -> str:
    """Stripped output; empty becomes NOANSWER (official). ``stop-newline`` cuts at the first newline first."""
    if ctx.protocol.has("stop-newline"):
        raw = raw.lstrip().split("\n", 1)[0]
    return raw.strip() or NO_ANSWER


#: The official stop list of probe answers (``convert_tokens_to_ids`` of each, see ``EvalContext.official_stop_ids``).
PROBE_STOPS = ("<|eot_id|>", " \n", "\n")


def probe_item(ctx: "EvalContext", probe: Probe, prompt: str, raw: str) -> dict[str, Any]:
    """One answered probe: what was asked, the raw and cleaned output, the reference and its ROUGE-L recall."""
    output = clean_output(ctx, raw)
    return {
        "level": LEVEL_NAMES[probe.level],
        "type": probe.type,
        **({"neighbor": probe.neighbor} if probe.neighbor else {}),
        "query": probe.query,
        "prompt": prompt,
        "raw_output": raw,
        "output": output,
        "reference": probe.answer,
        "score": rouge_l_recall(output, probe.answer, strip_punctuation=ctx.protocol.has("rouge-strip-punctuation")),
    }


def evaluate_probes(ctx: "EvalContext", probes: Sequence[Probe], set_name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Answer and score every probe; summary per level (FB/QA/AA), probe-weighted All, AA by attack type."""
    prompts = [probe_prompt(ctx, p) for p in probes]
    raw = ctx.generate(f"{set_name} probes", prompts, PROBE_MAX_NEW_TOKENS, ctx.official_stop_ids(*PROBE_STOPS))
    items = [probe_item(ctx, probe, prompt, text) for probe, prompt, text in zip(probes, prompts, raw)]
    summary: dict[str, Any] = {}
    for label in ("FB", "QA", "AA") if set_name == "forget" else ("FB", "QA"):
        summary[label] = mean_or_none([i["score"] for i in items if i["level"] == label], 100)
    summary["All"] = mean_or_none([i["score"] for i in items], 100)
    if set_name == "forget":
        summary["AA_by_type"] = {
            attack: mean_or_none([i["score"] for i in items if i["level"] == "AA" and normalize_attack(i["type"]) == attack], 100)
            for attack in ATTACK_TYPES
        }
    return summary, items


FORGET = EvalSet(
    name="forget", parts=(FORGET_PART,), evaluate=lambda ctx, data: evaluate_probes(ctx, data["forget"], "forget"),
    summary_path="forget", items_path="forget", case_study=True,
    columns=tuple(Column("Forget", label, f"forget.{label}", True) for label in ("FB", "QA", "AA", "All")),
)
NEIGHBOR = EvalSet(
    name="neighbor", parts=(NEIGHBOR_PART,), evaluate=lambda ctx, data: evaluate_probes(ctx, data["neighbor"], "neighbor"),
    summary_path="neighbor", items_path="neighbor", case_study=True,
    columns=tuple(Column("Neighbor", label, f"neighbor.{label}", False) for label in ("FB", "QA", "All")),
)
