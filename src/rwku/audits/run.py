"""Running the chosen audits on one unit's unlearned model and turning each result into files stored like an epoch
point: ``<run>/<unit>/audits/<name>/{summary,items}.json``.

Both ``rwku unlearn --audit`` (on each unit's unlearned model, before it is discarded) and ``rwku audit`` (on a
saved model) come through :func:`audit_files`.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from rwku.audits import AUDITS, audit_key
from rwku.audits.base import AuditSubject
from rwku.data.loader import RwkuData
from rwku.data.schema import Probe, Target, TargetData, pool
from rwku.evaluation.sets import load_target, parts_of

#: The probes every audit reads (whatever ``--sets`` the unit evaluates).
AUDIT_SETS = ("forget", "neighbor")


def audit_data(data: RwkuData, unit: Sequence[Target], limit: int | None) -> TargetData:
    """The unit's forget and neighbour probes (limited as the evaluation limits them), pooled over its targets."""
    datas = [load_target(data, target, AUDIT_SETS, limit) for target in unit]
    return datas[0] if len(datas) == 1 else pool(datas)


def control_target(data: RwkuData, unit: Sequence[Target]) -> Target | None:
    """Relearning's control target: the first target after the unit's last one in the data (wrapping round) that
    is not in the unit, or None when the data has no other target."""
    targets = data.targets()
    names = {t.name for t in unit}
    start = next((i for i, t in enumerate(targets) if t.name == unit[-1].name), -1) + 1
    return next((t for t in targets[start:] + targets[:start] if t.name not in names), None)


def control_probes(data: RwkuData, target: Target | None, limit: int | None) -> list[Probe]:
    return list(load_target(data, target, ("forget",), limit)["forget"]) if target is not None else []


def unit_audit_key(job: Any, unit: Sequence[Target]) -> dict[str, Any]:
    """The unit's own part of the audits' key: the fingerprint of the probes they read and relearning's control."""
    from rwku.data.loader import data_fingerprint

    control = control_target(job.data, unit) if "relearn" in job.audits else None
    targets = [*unit, control] if control is not None else list(unit)
    return {"data": data_fingerprint(job.data, targets, parts_of(AUDIT_SETS)), "control": control.name if control else None}


def add_audit_key(job: Any, unit: Sequence[Target], key: dict[str, Any]) -> dict[str, Any]:
    """``key`` with the audits' settings (run-wide) and their per-unit inputs, when the job asks for audits; a job
    without audits leaves the key as it was, so units stored before audits existed stay valid."""
    if not job.audits:
        return key
    return {**key, "unit": {**key["unit"], "audits": unit_audit_key(job, unit)}, "audits": audit_key(job.audits, job.audit_settings)}


def audit_files(subject: AuditSubject, names: Sequence[str], header: Mapping[str, Any]) -> dict[str, Any]:
    """Run each audit on ``subject``; its summary (``header`` — what produced it, its key — then its numbers and
    seconds) and items, by path relative to the unit folder."""
    files: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        result = AUDITS[name].run(subject)
        seconds = round(time.perf_counter() - start, 3)
        summary = {**header, "key": {**header.get("key", {}), "audit": name}, "audit": name,
                   "description": AUDITS[name].description, **result.summary, "seconds": seconds}
        files[f"audits/{name}/items.json"] = {"audit": name, "config": header.get("config"), **result.items}
        files[f"audits/{name}/summary.json"] = summary
    return files
