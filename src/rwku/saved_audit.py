"""``rwku audit``: the audits of a saved unlearned model (``rwku unlearn --save-model``: full weights, or a LoRA
adapter over ``--original``), one unit per target in ``<out>/<N>_<Name>/``, through the same plan, executors and
store as ``rwku eval`` and ``rwku unlearn``.

Each unit evaluates the saved model on the forget and neighbour probes (its ``summary.json``), then runs the chosen
audits exactly as ``rwku unlearn --audit`` runs them, into ``<unit>/audits/<name>/``. A saved model carries its
weights only: ICU's preamble and RepE's hooks are not saved, so those methods are audited through ``rwku unlearn``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from rwku import __version__
from rwku.audits import AuditSettings, AuditSubject, resolve_audit_settings
from rwku.audits.run import AUDIT_SETS, add_audit_key, audit_data, audit_files, control_probes, control_target
from rwku.data.loader import RwkuData
from rwku.data.schema import Target
from rwku.errors import RwkuError
from rwku.evaluation.context import ProgressFactory
from rwku.evaluation.engine import evaluate_target
from rwku.evaluation.settings import RunSettings
from rwku.models.fingerprint import model_fingerprint, provenance
from rwku.execution.plan import UnitTask, unit_key
from rwku.execution.store import UnitOutput
from rwku.models.endpoint import refuse_served
from rwku.models.loading import LoadedModel, load_model
from rwku.io import read_json

#: Methods whose saved weights are not what was evaluated (the preamble or the hooks are not saved).
NOT_SAVED = {"icu": "its preamble", "repe": "its steering hooks"}


def saved_method(spec: str) -> str:
    """The method that made a model saved by ``rwku unlearn --save-model`` (from its unit's summary), or ``saved``."""
    summary = Path(spec).expanduser().parent / "summary.json"
    method = (read_json(summary).get("config") or {}).get("method") if summary.is_file() else None
    if method in NOT_SAVED:
        raise RwkuError(f"--model {spec}: a saved {method} model holds only the original weights ({NOT_SAVED[method]} "
                        f"is not saved); audit it with rwku unlearn --method {method} --audit ...")
    return str(method or "saved")


@lru_cache(maxsize=1)
def load_saved(spec: str, original: str, device: str, dtype: str, kernels: str) -> LoadedModel:
    """The saved model: a LoRA adapter folder loaded over the original model, or a full model; loaded once per
    process (audits never modify it: they attack copies)."""
    folder = Path(spec).expanduser()
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(original, device=device, dtype=dtype, kernels=kernels)
        return dataclasses.replace(base, model=PeftModel.from_pretrained(base.model, str(folder)).eval(), name=spec, source=spec)
    return load_model(spec, device=device, dtype=dtype, kernels=kernels)


@dataclass
class AuditJob:
    """What to audit and how; everything that decides the numbers goes into each unit's key."""

    run: RunSettings  # the saved model (``run.model``) and how it is evaluated; its sets: the audits' (AUDIT_SETS)
    original: str
    data: RwkuData
    targets: Sequence[Target]
    audits: Sequence[str]
    preset: str = "small"
    audit_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def audit_settings(self) -> AuditSettings:
        return resolve_audit_settings(self.preset, self.audit_overrides)[0]

    def config(self) -> dict[str, Any]:
        return {"model": self.run.model, "original": self.original, "method": saved_method(self.run.model), **self.run.config(),
                "audits": {"names": list(self.audits), **dataclasses.asdict(self.audit_settings)}}

    def tasks(self) -> list[UnitTask]:
        """One unit per target at the top of the output folder; the original model joins the key."""
        if not self.audits:
            raise RwkuError("--audit: name at least one audit (quant8, quant4, relearn, suffix, logit_lens or all)")
        refuse_served(self.run.model, "auditing (attacks change the weights)")
        refuse_served(self.original, "auditing (the original model's weights)")
        saved_method(self.run.model)
        tasks = []
        for target in self.targets:
            key = unit_key(self, [target])
            key["original"] = {"spec": self.original, "fingerprint": model_fingerprint(self.original)}
            tasks.append(UnitTask(run="", slug=target.slug, targets=(target,), job=self, method=None,
                                  key=add_audit_key(self, [target], key)))
        return tasks

    def compute(self, task: UnitTask, progress: ProgressFactory) -> UnitOutput:
        run = self.run
        lm = load_saved(run.model, self.original, run.device, run.dtype, run.kernels)
        target = task.targets[0]
        data = audit_data(self.data, task.targets, run.limit)
        result = evaluate_target(run.context(lm, progress=progress), data, run.sets)
        header = {"model": run.model, "method": self.config()["method"], "target": target.name, "target_number": target.number,
                  "rwku_version": __version__, "protocol": run.protocol.name, "config": self.config(),
                  "data": self.data.description, "key": task.key, "provenance": provenance(lm.device)}
        control = control_target(self.data, task.targets)
        subject = AuditSubject(lm=lm, model=lm.model, preamble=None, method=header["method"], data=data,
                               settings=self.audit_settings,
                               load_original=lambda: run.load(self.original).model,
                               control_probes=lambda: control_probes(self.data, control, run.limit), run=run,
                               progress=progress)
        for name in AUDIT_SETS:
            subject.seed_baseline(name, result.items[name])
        files = audit_files(subject, self.audits, header)
        summary = {**header, **result.summary, "audit_points": list(self.audits)}
        summary["seconds"].update({f"audit_{name}": files[f"audits/{name}/summary.json"]["seconds"] for name in self.audits})
        return UnitOutput(summary=summary, items={"target": target.name, "config": header["config"], **result.items}, extra=files)
