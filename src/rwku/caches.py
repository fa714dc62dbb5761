"""The rwku cache: where it lives, what kinds of entries it holds, and reading an entry that may be broken.

Everything rwku builds once and reuses lives under :func:`cache_root` (``$RWKU_CACHE``, else ``~/.cache/rwku``):
the default model converted from GGUF, planted models, and the corpora a model writes. Each kind is one
:class:`CacheKind` in :data:`CACHE_KINDS` (where its entries are, what an entry is, how to check one); ``rwku cache``
lists, checks and removes them through it.

An entry is written whole or not at all (a temporary sibling renamed into place), but a full disk, a killed copy or
a hand edit can still leave one cut short. :func:`read_cached` is how every cache is read: an entry that cannot be
read is reported in one warning line, moved aside (a hidden sibling ``.<name>.corrupt-<time>``, kept for a look and
listed by ``rwku cache``) and the caller builds it again, instead of failing on it forever.

A new cache (reference evaluations, ...) adds one :class:`CacheKind` to :data:`CACHE_KINDS` and reads its entries
with :func:`read_cached`, its ``check`` (or a loader that raises :class:`CorruptEntry`) saying what a whole entry is.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from rwku.errors import RwkuError

T = TypeVar("T")
#: Marks an entry moved aside: ``.<name>.corrupt-<time>`` beside where it was.
CORRUPT_MARK = ".corrupt-"
#: Marks a folder being removed (renamed first): one a removal cut short left is listed as moved aside.
REMOVING_MARK = ".removing-"


def cache_root() -> Path:
    """Where rwku keeps converted models and other reusable artefacts (``$RWKU_CACHE``, else ~/.cache/rwku)."""
    return Path(os.environ.get("RWKU_CACHE", Path.home() / ".cache" / "rwku")).expanduser()


class CorruptEntry(Exception):
    """A cache entry that is not whole; the message says what is wrong with it."""


#: What reading a broken entry raises (besides CorruptEntry): cut-short JSON, missing fields, unreadable files
READ_ERRORS = (CorruptEntry, OSError, ValueError, KeyError, TypeError, IndexError)


# ------------------------------------------------------------------ checks of whole entries

def check_json(path: Path, *fields: str) -> Any:
    """The JSON object in ``path``, which must hold ``fields``."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptEntry(f"{path.name}: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict):
        raise CorruptEntry(f"{path.name}: not a JSON object")
    missing = [f for f in fields if f not in payload]
    if missing:
        raise CorruptEntry(f"{path.name}: no {', '.join(missing)}")
    return payload


def check_safetensors(path: Path) -> None:
    """A ``.safetensors`` file is whole: its header parses and its size is exactly header + tensor data."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CorruptEntry(f"{path.name}: {size} bytes, shorter than a safetensors header")
        length = struct.unpack("<Q", head)[0]
        if 8 + length > size:
            raise CorruptEntry(f"{path.name}: cut short ({size} bytes, the header alone needs {8 + length})")
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:
            raise CorruptEntry(f"{path.name}: unreadable header ({exc})") from None
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise CorruptEntry(f"{path.name}: {size} bytes where its header says {expected} (cut short)")


def check_model_folder(folder: Path, marker: str = "config.json") -> Path:
    """A saved model folder is whole: ``marker`` present, every JSON file parses, weights present and whole."""
    if not folder.is_dir():
        raise CorruptEntry(f"{folder.name}: not a folder")
    if not (folder / marker).is_file():
        raise CorruptEntry(f"{marker} missing (half-written)")
    for path in sorted(folder.glob("*.json")):
        check_json(path)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not list(folder.glob("*.bin")):
        raise CorruptEntry("no weights (*.safetensors)")
    for path in weights:
        check_safetensors(path)
    return folder


def check_planted(folder: Path) -> dict[str, Any]:
    """A planted model folder is whole (``recipe.json``, written last, holds its key); its record."""
    check_model_folder(folder, "recipe.json")
    return check_json(folder / "recipe.json", "key")


def check_texts(path: Path) -> list[str]:
    """A cached corpus: a JSON object whose ``texts`` is a list of strings."""
    texts = check_json(path, "texts")["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise CorruptEntry(f"{path.name}: texts is not a list of strings")
    return texts


# ------------------------------------------------------------------ reading, moving aside

def warn(line: str) -> None:
    """One warning line on stderr (above the progress bars: rich redirects stderr while they are shown)."""
    print(f"warning: {line}", file=sys.stderr, flush=True)


def move_aside(path: Path) -> Path | None:
    """Rename ``path`` to a hidden ``.<name>.corrupt-<time>`` beside it; None if it is gone (another process moved
    it first)."""
    aside = path.with_name(f".{path.name}{CORRUPT_MARK}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return None
    return aside


def read_cached(path: Path, load: Callable[[Path], T], *, what: str) -> T | None:
    """``load(path)``, or None when there is no entry at ``path`` (the caller builds it).

    An entry ``load`` cannot read (it raises :class:`CorruptEntry`, or an error of :data:`READ_ERRORS`) is
    reported in one warning line naming ``what`` it is, moved aside (:func:`move_aside`), and None is returned, so
    the caller builds it again.
    """
    if not path.exists():
        return None
    try:
        return load(path)
    except READ_ERRORS as exc:
        aside = move_aside(path)
        where = f"moved aside to {aside.name}" if aside else "already moved aside"
        reason = (" ".join(str(exc).split()) or type(exc).__name__).removeprefix(f"{path.name}: ")
        warn(f"{what} {path} is corrupt ({reason}); {where}; building it again")
        return None


# ------------------------------------------------------------------ the kinds of entries

@dataclass(frozen=True)
class CacheKind:
    """One kind of cache entry: under ``folder`` of the cache root, the entries matching ``pattern`` (files or
    folders) whose name passes ``accepts``; ``check`` raises :class:`CorruptEntry` (or a read error) for a broken one,
    ``describe`` says what an entry holds in a few words."""

    name: str
    folder: str
    pattern: str
    check: Callable[[Path], Any]
    describe: Callable[[Path], str]
    accepts: Callable[[str], bool] = lambda name: True

    def entries(self, root: Path) -> list[Path]:
        base = root / self.folder
        if not base.is_dir():
            return []
        return sorted(p for p in base.glob(self.pattern) if not p.name.startswith(".") and self.accepts(p.name))


#: The folder of the default model converted from GGUF (rwku.models.loading)
CONVERTED_MODEL = "smollm2-135m-instruct"


def describe_json(path: Path, *fields: str) -> str:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable"
    return " · ".join(str(payload.get(f)) for f in fields if isinstance(payload, dict) and payload.get(f) is not None)


def describe_planted(folder: Path) -> str:
    text = describe_json(folder / "recipe.json", "base", "planted")
    return text.replace("[", "").replace("]", "").replace("'", "")


CACHE_KINDS: dict[str, CacheKind] = {kind.name: kind for kind in (
    CacheKind("model", "models", CONVERTED_MODEL, check_model_folder,
              lambda p: "the default model (SmolLM2-135M-Instruct) converted from its GGUF"),
    CacheKind("planted", "models", "*", check_planted, describe_planted, accepts=lambda name: name != CONVERTED_MODEL),
    CacheKind("corpus", "corpora", "*.json", check_texts, lambda p: describe_json(p, "target", "kind", "model"),
              accepts=lambda name: not name.startswith("retain-")),
    CacheKind("retain", "corpora", "retain-*.json", check_texts, lambda p: describe_json(p, "kind", "model")),
)}


#: The pseudo-kind of entries moved aside (``rwku cache --remove corrupt`` deletes them)
MOVED_ASIDE = "corrupt"


@dataclass(frozen=True)
class Entry:
    """One cache entry as ``rwku cache`` shows it: its kind, where it is, its size in bytes, what it holds."""

    kind: str
    path: Path
    size: int
    holds: str


def list_entries(root: Path) -> list[Entry]:
    """Every entry of every kind under ``root``, then those moved aside."""
    found = [Entry(kind.name, path, size_of(path), kind.describe(path))
             for kind in CACHE_KINDS.values() for path in kind.entries(root)]
    return found + [Entry(MOVED_ASIDE, path, size_of(path), "moved aside: " + original_name(path)) for path in moved_aside(root)]


def original_name(aside: Path) -> str:
    """The name of the entry a moved-aside (or half-removed) one was."""
    return aside.name[1:].split(CORRUPT_MARK)[0].split(REMOVING_MARK)[0]


def check_entry(entry: Entry) -> str | None:
    """What is wrong with ``entry`` (one line), or None when it is whole. A broken entry is moved aside, as reading
    it would (:func:`read_cached`), so that its next use builds it again."""
    if entry.kind == MOVED_ASIDE:
        return None
    try:
        CACHE_KINDS[entry.kind].check(entry.path)
    except READ_ERRORS as exc:
        move_aside(entry.path)
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def select_entries(entries: list[Entry], names: list[str]) -> list[Entry]:
    """The entries ``names`` name: an entry's file or folder name, a kind (every entry of it), ``corrupt`` (those
    moved aside) or ``all``; a name matching nothing is a :class:`RwkuError`."""
    chosen: dict[Path, Entry] = {}
    for name in names:
        matched = [e for e in entries if name in ("all", e.kind, e.path.name)]
        if not matched:
            kinds = ", ".join([*CACHE_KINDS, MOVED_ASIDE])
            raise RwkuError(f"--remove {name}: no such cache entry; give an entry's name as rwku cache lists it, a kind "
                            f"({kinds}) or all")
        chosen.update((e.path, e) for e in matched)
    return list(chosen.values())


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def moved_aside(root: Path) -> Iterator[Path]:
    """Entries moved aside under ``root`` (in any kind's folder)."""
    for folder in sorted({kind.folder for kind in CACHE_KINDS.values()}):
        base = root / folder
        if base.is_dir():
            yield from sorted(p for p in base.iterdir()
                              if p.name.startswith(".") and (CORRUPT_MARK in p.name or REMOVING_MARK in p.name))


def remove_entry(path: Path) -> int:
    """Delete a cache entry (file or folder); the bytes freed. A folder is renamed to a hidden name first, so that a
    removal cut short leaves no entry that looks whole."""
    size = size_of(path)
    if path.is_dir():
        doomed = path.with_name(f".{path.name}{REMOVING_MARK}{uuid.uuid4().hex[:6]}")
        path.rename(doomed)
        shutil.rmtree(doomed)
    else:
        path.unlink(missing_ok=True)
    return size
