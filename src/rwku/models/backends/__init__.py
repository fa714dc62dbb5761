"""Model backends: the one seam through which the evaluation, the corpus writer and RepE run a model."""

from __future__ import annotations

from typing import Any

from rwku.errors import RwkuError
from rwku.models.backends.base import Backend, kernel_settings
from rwku.models.backends.hf import HfBackend
from rwku.models.backends.official import OfficialBackend
from rwku.models.loading import LoadedModel

BACKENDS: dict[str, type[Backend]] = {backend.name: backend for backend in (HfBackend, OfficialBackend)}


def make_backend(lm: LoadedModel, name: str = "hf", batch_size: int = 16, device: Any = None) -> Backend:
    """The backend ``name`` running ``lm`` (``hf``, the default, or ``official``)."""
    if name not in BACKENDS:
        raise RwkuError(f"backend {name}: unknown; choose {', '.join(BACKENDS)}")
    return BACKENDS[name](lm, batch_size=batch_size, device=device)


__all__ = ["BACKENDS", "Backend", "HfBackend", "OfficialBackend", "kernel_settings", "make_backend"]
