"""Model backends: the one seam through which the evaluation, the corpus writer and RepE run a model."""

from __future__ import annotations

from typing import Any

from rwku.errors import RwkuError
from rwku.models.backends.base import Backend, kernel_settings
from rwku.models.backends.hf import HfBackend
from rwku.models.backends.official import OfficialBackend
from rwku.models.backends.served import ServedBackend
from rwku.models.loading import LoadedModel

BACKENDS: dict[str, type[Backend]] = {backend.name: backend for backend in (HfBackend, OfficialBackend, ServedBackend)}


def make_backend(lm: LoadedModel, name: str = "hf", batch_size: int = 16, device: Any = None, draft: int | None = None) -> Backend:
    """The backend ``name`` running ``lm`` (``hf``, the default, or ``official``); ``draft`` sets the ``hf``
    backend's prompt-lookup drafting (None: its default, see :class:`HfBackend`). A served model (``openai:NAME``)
    always runs on its server (:class:`ServedBackend`)."""
    if lm.served or name == "served":
        if name not in ("hf", "served") or draft:
            raise RwkuError(f"backend {name}: {lm.name} runs on its server; only the served backend runs it")
        return ServedBackend(lm, batch_size=batch_size)
    if name not in BACKENDS:
        raise RwkuError(f"backend {name}: unknown; choose {', '.join(BACKENDS)}")
    if draft and name != "hf":
        raise RwkuError(f"backend {name}: no prompt-lookup drafting (only the hf backend drafts)")
    return BACKENDS[name](lm, batch_size=batch_size, device=device, **({"draft": draft} if draft is not None else {}))


__all__ = ["BACKENDS", "Backend", "HfBackend", "OfficialBackend", "ServedBackend", "kernel_settings", "make_backend"]
