"""Where RWKU data can come from: per-target folders, merged all-target files, the Hugging Face hub, the demo.

A *source* answers two questions: which targets it numbers, and the raw records of one *kind* (an official
file stem such as ``forget_level1``) for one target, or ``None`` when it has no such file. :class:`RwkuData`
asks its sources in order, so per-target folders and merged files combine (the shared data holds target 1's
probes in ``data/RWKU/1_Stephen_King`` and its utility sets in ``All/``).
"""

from __future__ import annotations

import json
import lzma
import re
from collections import defaultdict
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from rwku.data.schema import PERSON, Target, kind_of
from rwku.errors import RwkuError

#: Official file stem -> Hugging Face config name of ``jinzhuoran/RWKU``.
HF_CONFIGS: dict[str, str] = {
    "intro": "forget_target",
    "forget_level1": "forget_level1",
    "forget_level2": "forget_level2",
    "forget_level3": "forget_level3",
    "neighbor_level1": "neighbor_level1",
    "neighbor_level2": "neighbor_level2",
    "forget_mia": "mia_forget",
    "retain_mia": "mia_retain",
    "retain_mmlu": "utility_general",
    "retain_bbh": "utility_reason",
    "truthful": "utility_truthfulness",
    "triviaqa": "utility_factuality",
    "fluency": "utility_fluency",
    "passage": "train_original_passage",
    "positive": "train_positive_llama3",
    "negative": "train_negative_llama3",
    "pair": "train_pair_llama3",
    "reject": "train_refusal_llama3",
}
#: Splits of the hub configs: the training corpora and the target list are "train", probes are "test".
HF_TRAIN_KINDS = {"intro", "passage", "positive", "negative", "pair", "reject"}

TARGET_DIR = re.compile(r"^(\d+)_(.+)$")
DEMO_ROOT = Path(__file__).parent / "demo"


def read_json_file(path: Path) -> Any:
    """Read a ``.json`` or ``.json.xz`` file; a malformed file raises one line naming it."""
    try:
        raw = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
        return json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise RwkuError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); fix or re-download it") from exc
    except (lzma.LZMAError, UnicodeDecodeError) as exc:
        raise RwkuError(f"{path}: cannot be decoded ({exc}); fix or re-download it") from exc
    except OSError as exc:
        raise RwkuError(f"{path}: cannot be read ({exc.strerror}); check the path and permissions") from exc


def find_kind_file(folder: Path, kind: str) -> Path | None:
    """The file for ``kind`` in ``folder``, plain or xz-compressed, if any."""
    for name in (f"{kind}.json", f"{kind}.json.xz"):
        if (folder / name).is_file():
            return folder / name
    return None


def as_record_list(data: Any, path: Path) -> list[dict[str, Any]]:
    """Official files hold a list of records, except ``intro.json``, which may be a single dict."""
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise RwkuError(f"{path}: expected a JSON list of records, got {type(data).__name__}; fix or re-download it")
    return data


class Source(Protocol):
    """One place RWKU data can be read from."""

    description: str

    def targets(self) -> list[Target]:
        """Targets this source can number (may be empty for sources without a target list)."""

    def records(self, target: Target, kind: str) -> tuple[list[dict[str, Any]], str] | None:
        """Raw records of ``kind`` for ``target`` and a label of where they came from, or ``None``."""


class PerTargetSource:
    """The official per-target layout: ``<root>/<N>_<Name>/<kind>.json[.xz]``."""

    def __init__(self, root: Path):
        self.root = root
        self.description = str(root)

    @cached_property
    def folders(self) -> dict[int, Path]:
        found: dict[int, Path] = {}
        for child in sorted(self.root.iterdir()):
            match = TARGET_DIR.match(child.name)
            if match and child.is_dir():
                found[int(match.group(1))] = child
        return found

    def targets(self) -> list[Target]:
        targets = []
        for number, folder in sorted(self.folders.items()):
            name = TARGET_DIR.match(folder.name).group(2).replace("_", " ")  # type: ignore[union-attr]
            intro, target_kind = "", PERSON
            path = find_kind_file(folder, "intro")
            if path is not None:
                records = as_record_list(read_json_file(path), path)
                if records:
                    name = str(records[0].get("target", name))
                    intro = str(records[0].get("intro", ""))
                    target_kind = kind_of(records[0], str(path))
            targets.append(Target(number=number, name=name, intro=intro, kind=target_kind))
        return targets

    def records(self, target: Target, kind: str) -> tuple[list[dict[str, Any]], str] | None:
        folder = self.folders.get(target.number)
        path = find_kind_file(folder, kind) if folder is not None else None
        if path is None:
            return None
        return as_record_list(read_json_file(path), path), str(path)


class MergedSource:
    """Merged all-target files ``<root>/<kind>.json[.xz]`` whose records name their target in ``subject``."""

    def __init__(self, root: Path):
        self.root = root
        self.description = str(root)
        self._by_subject: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def targets(self) -> list[Target]:
        path = find_kind_file(self.root, "intro")
        if path is None:
            return []
        records = as_record_list(read_json_file(path), path)
        return [Target(number=i + 1, name=str(r.get("target", "")), intro=str(r.get("intro", "")),
                       kind=kind_of(r, f"{path} record {i}")) for i, r in enumerate(records)]

    def _index(self, kind: str) -> dict[str, list[dict[str, Any]]] | None:
        if kind not in self._by_subject:
            path = find_kind_file(self.root, kind)
            if path is None:
                return None
            index: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for i, record in enumerate(as_record_list(read_json_file(path), path)):
                if not isinstance(record, dict) or "subject" not in record:
                    raise RwkuError(f"{path}: record {i} has no 'subject' naming its target; merged files need one")
                index[str(record["subject"])].append(record)
            self._by_subject[kind] = index
        return self._by_subject[kind]

    def records(self, target: Target, kind: str) -> tuple[list[dict[str, Any]], str] | None:
        index = self._index(kind)
        if index is None or target.name not in index:
            return None
        return index[target.name], f"{find_kind_file(self.root, kind)} [subject={target.name}]"


class HubSource:
    """The Hugging Face dataset ``jinzhuoran/RWKU`` (or a local copy of its repository) via ``datasets``.

    Each official file is one config of the dataset; records carry ``subject``. The target list is the
    ``forget_target`` config in official order, so its position gives the target number.
    """

    def __init__(self, path: str):
        self.path = path
        self.description = f"hf:{path}"
        self._by_subject: dict[str, dict[str, list[dict[str, Any]]] | None] = {}

    def _load(self, kind: str) -> list[dict[str, Any]] | None:
        import datasets  # imported lazily: it is slow to import and only this source needs it

        config = HF_CONFIGS.get(kind)
        if config is None:
            return None
        split = "train" if kind in HF_TRAIN_KINDS else "test"
        try:
            dataset = datasets.load_dataset(self.path, config, split=split)
        except ValueError as exc:
            if "BuilderConfig" in str(exc) or "config" in str(exc).lower():
                return None
            raise RwkuError(f"hf:{self.path}: cannot load config {config!r} ({exc})") from exc
        except Exception as exc:  # network, authentication, missing repository: all user-fixable
            raise RwkuError(
                f"hf:{self.path}: cannot load config {config!r} ({type(exc).__name__}: {exc}); "
                "check the dataset id, your network, or pass a local copy with --data PATH"
            ) from exc
        # a field some records lack comes back as None from datasets; drop it so records match the JSON files
        return [{k: v for k, v in record.items() if v is not None} for record in dataset]

    def targets(self) -> list[Target]:
        records = self._load("intro") or []
        return [Target(number=i + 1, name=str(r["target"]), intro=str(r.get("intro", "")),
                       kind=kind_of(r, f"hf:{self.path} record {i}")) for i, r in enumerate(records)]

    def records(self, target: Target, kind: str) -> tuple[list[dict[str, Any]], str] | None:
        if kind not in self._by_subject:
            loaded = self._load(kind)
            index: dict[str, list[dict[str, Any]]] | None = None
            if loaded is not None:
                index = defaultdict(list)
                for record in loaded:
                    index[str(record.get("subject", ""))].append(record)
            self._by_subject[kind] = index
        index = self._by_subject[kind]
        if index is None or target.name not in index:
            return None
        return index[target.name], f"hf:{self.path}/{HF_CONFIGS[kind]} [subject={target.name}]"


def discover_sources(spec: str) -> list[Source]:
    """Turn one ``--data`` value into sources.

    ``demo`` is the bundled demo set (three people);
    ``hf:ID`` (or ``hf:/local/copy``) reads through ``datasets``; a folder is
    searched for per-target folders (at its root, in ``Target/`` or in ``data/RWKU/``) and for merged files (at its
    root or in ``All/``), so pointing at a clone of an official layout finds all of it.
    """
    if spec == "demo":
        return [PerTargetSource(DEMO_ROOT)]
    if spec.startswith("hf:"):
        return [HubSource(spec[3:])]
    root = Path(spec).expanduser()
    if not root.exists():
        raise RwkuError(f"--data {spec}: no such file or folder; give an RWKU data folder, 'demo' or 'hf:jinzhuoran/RWKU'")
    if not root.is_dir():
        raise RwkuError(f"--data {spec}: is a file; give the folder that holds the RWKU target folders or merged files")
    sources: list[Source] = []
    for candidate in (root, root / "Target", root / "data" / "RWKU", root / "data" / "RWKU" / "Target"):
        if candidate.is_dir() and any(TARGET_DIR.match(c.name) and c.is_dir() for c in candidate.iterdir()):
            sources.append(PerTargetSource(candidate))
    for candidate in (root, root / "All"):
        if candidate.is_dir() and any(find_kind_file(candidate, kind) for kind in HF_CONFIGS if kind != "intro"):
            sources.append(MergedSource(candidate))
    if not sources:
        raise RwkuError(
            f"--data {spec}: found neither <N>_<Name>/ target folders nor merged files (forget_level1.json, ...); "
            "point at an RWKU data folder"
        )
    return sources
