"""What identifies a model's weights (the unit key's model fingerprint), and what a run records beside its key
(versions, host, device name). Below the execution layer so that every layer that stores results can use them."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from rwku.io import digest
from rwku.models.loading import DEFAULT_MODEL, SMOLLM2_PACKAGE, built_model, check_model_spec

HEAD_BYTES = 1 << 20


def file_fingerprint(path: Path) -> list[Any]:
    """Size and a hash of the first and last MiB: cheap on a 16 GB checkpoint, and a replaced file still changes it."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        sha.update(handle.read(HEAD_BYTES))
        if size > 2 * HEAD_BYTES:
            handle.seek(size - HEAD_BYTES)
            sha.update(handle.read(HEAD_BYTES))
    return [size, sha.hexdigest()[:16]]


@lru_cache(maxsize=16)
def model_fingerprint(spec: str) -> str:
    """What identifies a model's weights: its local files, the default model's package, the planted demo model's
    planting key, or the hub id as given."""
    from importlib.metadata import PackageNotFoundError, version

    check_model_spec(spec)
    built = built_model(spec)
    if built is not None:  # a planted model: its planting key (base model, texts, recipe: a new recipe is a new model)
        return built.fingerprint()
    if spec == DEFAULT_MODEL:
        try:
            return f"{SMOLLM2_PACKAGE}=={version(SMOLLM2_PACKAGE.replace('_', '-'))}"
        except PackageNotFoundError:
            return f"{SMOLLM2_PACKAGE} (not installed)"
    path = Path(spec).expanduser()
    if path.is_file():
        return digest(file_fingerprint(path))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return digest([[str(p.relative_to(path)), *file_fingerprint(p)] for p in files])
    return f"hub:{spec}"  # a hub id: its revision is whatever the hub serves under that name


def provenance(device: Any = None) -> dict[str, Any]:
    """What a unit records beside its key: versions, host and device name (none of it decides reuse)."""
    import platform
    from importlib.metadata import version

    import torch

    from rwku import __version__

    info: dict[str, Any] = {"rwku": __version__, "torch": torch.__version__, "transformers": version("transformers"),
                            "python": platform.python_version(), "host": platform.node()}
    if device is not None and getattr(device, "type", "") == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    else:
        info["device"] = platform.processor() or platform.machine()
    return info
