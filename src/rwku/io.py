"""The ground floor's files: strict JSON (NaN as null), atomic writes (a reader never sees half a file), and a
short stable hash of a JSON-able value. Every layer writes through these; they import nothing from rwku."""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping


def json_safe(value: Any) -> Any:
    """NaN/inf become null so files are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` create a temporary file beside ``path``, flush it to disk, then rename it into place: readers
    never see a half-written file, and a failure leaves the old one. The file is created by ``write`` itself (not
    ``mkstemp``), so it gets the umask's permissions: results and reports are meant to be shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, payload: Any) -> None:
    """Strict JSON (NaN -> null), written atomically."""
    write_text_atomic(path, json.dumps(json_safe(payload), ensure_ascii=False, indent=1, allow_nan=False))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def digest(value: Any) -> str:
    """A short, stable hash of a JSON-able value (key order does not matter)."""
    text = json.dumps(json_safe(value), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
