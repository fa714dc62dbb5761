"""The audits' settings, their presets and where each value comes from.

``paper`` values are for an 8B model on a GPU (the sources' scales); ``small`` values make a unit of the 135M
default model finish its audits in minutes on 2 CPU cores. The preset follows the unlearning run's (``--preset
auto`` picks ``small`` for the default models); ``--audit-set key=value`` overrides a value.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from rwku.errors import RwkuError
from rwku.methods.config import CALIBRATED, RWKU_DEFAULT, convert, source

ZHANG = "Zhang et al. 2025 (group size 128)"
GCG = "Zou et al. 2023 (GCG)"
LENS = "rwku (issue 15)"


@dataclass(frozen=True)
class AuditSettings:
    """Every audit's values; an audit reads only its own (see ``Audit.settings``)."""

    group_size: int = source(ZHANG, 128)
    quant_backend: str = source(RWKU_DEFAULT + ": torch runs on any device; bitsandbytes needs a CUDA GPU", "torch")
    relearn_steps: int = source(RWKU_DEFAULT + " (Deeb & Roger 2024 fine-tune for a few epochs)", 20)
    relearn_lr: float = source(RWKU_DEFAULT + " (LoRA)", 1e-4)
    relearn_mode: str = source(RWKU_DEFAULT, "lora")
    relearn_seed: int = source(RWKU_DEFAULT, 0)
    suffix_tokens: int = source(GCG + ": 20; rwku: 12", 12)
    suffix_steps: int = source(GCG + ": 500; rwku: 250", 250)
    suffix_candidates: int = source(GCG + " (batch of 512)", 512)
    suffix_top_k: int = source(GCG, 256)
    suffix_probes: int | None = source(RWKU_DEFAULT + ": every forget QA probe", None)
    suffix_seed: int = source(RWKU_DEFAULT, 0)
    lens_top_k: int = source(LENS, 10)
    lens_frequent: int = source(LENS + ": the 200 most frequent tokens (earliest BPE merges)", 200)


#: Values for the 135M default model on 2 CPU cores (minutes per unit).
SMALL = {"relearn_steps": 4, "relearn_lr": 3e-3, "suffix_steps": 8, "suffix_candidates": 24, "suffix_top_k": 32,
         "suffix_probes": 2}


def resolve_audit_settings(preset: str, overrides: Mapping[str, Any] | None = None) -> tuple[AuditSettings, dict[str, str]]:
    """The settings for an unlearning run's preset with ``overrides`` on top, and each value's source."""
    fields = {f.name: f for f in dataclasses.fields(AuditSettings)}
    hints = typing.get_type_hints(AuditSettings)
    values: dict[str, Any] = {}
    sources = {name: f.metadata["source"] for name, f in fields.items()}
    if preset == "small":
        values.update(SMALL)
        sources.update({name: CALIBRATED for name in SMALL})
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise RwkuError(f"--audit-set {key}: unknown audit setting; known: {', '.join(fields)}")
        values[key] = convert(f"--audit-set {key}", value, hints[key])
        sources[key] = "--audit-set"
    settings = AuditSettings(**values)
    check_settings(settings)
    return settings, sources


def check_settings(settings: AuditSettings) -> None:
    if settings.relearn_mode not in ("lora", "full"):
        raise RwkuError(f"--audit-set relearn_mode={settings.relearn_mode}: choose lora or full")
    if settings.quant_backend not in ("torch", "bitsandbytes"):
        raise RwkuError(f"--audit-set quant_backend={settings.quant_backend}: choose torch or bitsandbytes")
    for name in ("group_size", "relearn_steps", "suffix_tokens", "suffix_steps", "suffix_candidates", "suffix_top_k", "lens_top_k"):
        if getattr(settings, name) < 1:
            raise RwkuError(f"--audit-set {name}={getattr(settings, name)}: must be at least 1")
