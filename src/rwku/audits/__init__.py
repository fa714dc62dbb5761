"""Audits: does the forgotten knowledge come back? Each audit attacks an unlearned model (as it is evaluated:
weights, ICU preamble, RepE hooks) and reports, on the same probes, the score under the attack, after unlearning
and of the original model, and the recovered % (:func:`~rwku.audits.base.recovered_percent`).

Adding an audit is one module defining an :class:`~rwku.audits.base.Audit` and one line in :data:`AUDITS`;
``--audit``, the unit key, storage (``<run>/<unit>/audits/<name>/``) and the report's Audits table read the registry.
"""

from __future__ import annotations

from typing import Sequence

from rwku.audits.base import Audit, AuditResult, AuditSubject, recovered_percent
from rwku.audits.logit_lens import LOGIT_LENS
from rwku.audits.quantization import QUANT4, QUANT8
from rwku.audits.relearn import RELEARN
from rwku.audits.settings import AuditSettings, resolve_audit_settings
from rwku.audits.suffix import SUFFIX
from rwku.errors import RwkuError

AUDITS: dict[str, Audit] = {a.name: a for a in (QUANT8, QUANT4, RELEARN, SUFFIX, LOGIT_LENS)}


def parse_audits(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"quant8,logit_lens"`` or a list -> registry names in registry order; ``all`` is every audit."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec or ()) if s.strip()]
    if names == ["all"]:
        return tuple(AUDITS)
    unknown = [n for n in names if n not in AUDITS]
    if unknown:
        raise RwkuError(f"--audit {','.join(names)}: unknown audit {', '.join(unknown)}; choose from {', '.join(AUDITS)} or all")
    return tuple(name for name in AUDITS if name in names)


def audit_key(names: Sequence[str], settings: AuditSettings) -> dict:
    """What decides the audits' numbers: which audits ran and the settings they read (joins the unit key)."""
    used = sorted({field for name in names for field in AUDITS[name].settings})
    return {"names": list(names), "settings": {field: getattr(settings, field) for field in used}}


__all__ = ["AUDITS", "Audit", "AuditResult", "AuditSettings", "AuditSubject", "audit_key", "parse_audits",
           "recovered_percent", "resolve_audit_settings"]
