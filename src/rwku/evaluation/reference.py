"""Scores against the never-taught reference: what unlearning removed of what planting taught, and what it broke.

A planted model (``smollm2-135m-demo``, an ``rwku plant`` folder) records the base model it was planted from; on a
planted target that base model is the model that never learned the target's facts, which benchmarks of real-world
knowledge otherwise lack (TOFU and MUSE have it only because their knowledge is fine-tuned in). With B the planted
model before unlearning, A after it and R the reference, per target:

* ``removed.<part>`` (forget FB, QA, AA, All): 100 · (B − A) / (B − R), the share of the taught knowledge that is
  gone (100: down to the reference; above 100: below it). n/a where B ≤ R: planting taught nothing measurable.
* ``over_forget``: max(0, R − A) on forget All, in points: how far A falls below what a model that never learned
  the facts scores (answers it would get right from general knowledge, lost too: damage, not forgetting).
* ``over_neighbor``: max(0, B − A) on neighbour All, in points: neighbour knowledge lost.
* ``privleak``: MUSE's PrivLeak (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation", Sec. 3):
  100 · (AUC_A − AUC_R) / AUC_R, with AUC the ROC-AUC of telling the forget texts (FM) from the retain texts (RM)
  by the Min-40% attack (MUSE's ``Min-40%`` key: :data:`PRIVLEAK_ATTACK`), higher attack score = more member-like.
  0: the unlearned model tells the target's texts from others as the never-taught model does. Positive: it still
  treats them as more familiar than the reference would (knowledge leaks). Negative: less familiar than a model
  that never saw them (over-unlearning, itself a detectable trace).

Every value is None (shown "n/a") where the target has no reference (a control target, a model that was not
planted) or a needed score is missing; nothing is ever made up.
"""

from __future__ import annotations

from typing import Any, Mapping

#: The run folder of the never-taught reference: a planted model's base model on each planted unit.
REFERENCE_RUN = "reference"
#: MUSE's PrivLeak attack: Min-K% Prob with K = 40%.
PRIVLEAK_ATTACK = "mink_0.4"
FORGET_PARTS = ("FB", "QA", "AA", "All")
#: Where each value goes in a summary's ``reference`` section (the report's columns read these paths).
REFERENCE_KEYS = (*(f"removed.{part}" for part in FORGET_PARTS), "over_forget", "over_neighbor", "privleak")


def value(summary: Mapping[str, Any] | None, *keys: str) -> float | None:
    """The number at ``summary[k1][k2]...`` (keys given one by one: an attack name such as ``mink_0.4`` has a dot),
    or None."""
    node: Any = summary
    for key in keys:
        if not isinstance(node, Mapping) or node.get(key) is None:
            return None
        node = node[key]
    return float(node)


def knowledge_removed(before: float | None, after: float | None, reference: float | None) -> float | None:
    """100 · (before − after) / (before − reference); None where a value is missing or before ≤ reference."""
    if before is None or after is None or reference is None or before <= reference:
        return None
    return 100 * (before - after) / (before - reference)


def shortfall(after: float | None, floor: float | None) -> float | None:
    """max(0, floor − after) in points; None where a value is missing."""
    if after is None or floor is None:
        return None
    return max(0.0, floor - after)


def privleak(auc_after: float | None, auc_reference: float | None) -> float | None:
    """MUSE's PrivLeak: 100 · (AUC_after − AUC_reference) / AUC_reference; None where an AUC is missing or 0."""
    if auc_after is None or auc_reference is None or auc_reference == 0:
        return None
    return 100 * (auc_after - auc_reference) / auc_reference


def reference_scores(before: Mapping[str, Any], after: Mapping[str, Any],
                     reference: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Every :data:`REFERENCE_KEYS` value of one target (all None without a reference)."""
    auc = ("mia", "attacks", PRIVLEAK_ATTACK, "auc")
    scores: dict[str, float | None] = {
        f"removed.{part}": knowledge_removed(value(before, "forget", part), value(after, "forget", part),
                                             value(reference, "forget", part))
        for part in FORGET_PARTS
    }
    scores["over_forget"] = shortfall(value(after, "forget", "All"), value(reference, "forget", "All"))
    scores["over_neighbor"] = shortfall(value(after, "neighbor", "All"), value(before, "neighbor", "All")) if reference else None
    scores["privleak"] = privleak(value(after, *auc), value(reference, *auc))
    return scores
