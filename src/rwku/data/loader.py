"""Load RWKU data for selected targets from one or more sources, into typed records.

``RwkuData.open(["../shared/rwku-data/strzar-purge"])`` finds the per-target probes and the merged utility/MIA
files; ``select("1-10")`` resolves a target spec; ``load(target, parts)`` returns a :class:`TargetData` with
every record checked (the evaluation sets say which parts they need: :mod:`rwku.evaluation.sets`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Sequence

from rwku.data.schema import Part, Target, TargetData
from rwku.data.sources import Source, discover_sources
from rwku.errors import RwkuError
from rwku.io import digest


class RwkuData:
    """RWKU data from several sources, asked in order: the first that has a file for a target wins."""

    def __init__(self, sources: Sequence[Source]):
        self.sources = list(sources)
        self._fingerprints: dict[tuple[int, tuple[str, ...]], str] = {}

    @classmethod
    def open(cls, specs: Iterable[str]) -> "RwkuData":
        """Open ``--data`` values (folders, ``demo``, ``hf:ID``); earlier values win where several have a file."""
        sources: list[Source] = []
        for spec in specs:
            sources.extend(discover_sources(spec))
        if not sources:
            raise RwkuError("no data given; pass --data PATH (an RWKU folder), --data demo or --data hf:jinzhuoran/RWKU")
        return cls(sources)

    @property
    def description(self) -> str:
        return " + ".join(source.description for source in self.sources)

    def targets(self) -> list[Target]:
        """All numbered targets, by number; the first source to number a target names it."""
        found: dict[int, Target] = {}
        for source in self.sources:
            for target in source.targets():
                found.setdefault(target.number, target)
        if not found:
            raise RwkuError(f"{self.description}: no targets found (no <N>_<Name>/ folders and no intro file)")
        return [found[n] for n in sorted(found)]

    def select(self, spec: str) -> list[Target]:
        """Resolve a target spec: ``all``, numbers, ranges (``1-10``), names, mixed with commas (``1,3,Bruce Lee``).

        Names may themselves hold commas (``Prince Harry, Duke of Sussex``), so comma-separated pieces that are
        not numbers are joined back until they name a target.
        """
        targets = self.targets()
        by_number = {t.number: t for t in targets}
        by_name = {}
        for t in targets:
            by_name[t.name.casefold()] = t
            by_name[t.slug.casefold()] = t
        if spec.strip().lower() == "all":
            return targets
        chosen: list[Target] = []
        pending = ""
        for piece in spec.split(","):
            text = f"{pending},{piece}" if pending else piece
            token = text.strip()
            range_match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", token)
            if not pending and token.isdigit():
                numbers = [int(token)]
            elif not pending and range_match:
                lo, hi = int(range_match.group(1)), int(range_match.group(2))
                if lo > hi:
                    raise RwkuError(f"--targets {spec}: range {token} is empty; write it low-high")
                numbers = list(range(lo, hi + 1))
            elif token.casefold() in by_name:
                numbers = [by_name[token.casefold()].number]
            else:
                pending = text
                continue
            pending = ""
            for number in numbers:
                if number not in by_number:
                    raise RwkuError(
                        f"--targets {spec}: target {number} is not in {self.description} "
                        f"(it has {len(targets)} targets, {targets[0].number}-{targets[-1].number}); pick another"
                    )
                if by_number[number] not in chosen:
                    chosen.append(by_number[number])
        if pending.strip():
            raise RwkuError(
                f"--targets {spec}: no target named {pending.strip()!r} in {self.description}; "
                "use a number, a range like 1-10, or a name as `rwku data info` lists it"
            )
        if not chosen:
            raise RwkuError(f"--targets {spec!r}: selects no target")
        return chosen

    def raw_records(self, target: Target, kind: str) -> tuple[list[dict[str, Any]], str] | None:
        """Raw records of one official file for ``target`` from the first source that has it."""
        for source in self.sources:
            found = source.records(target, kind)
            if found is not None:
                return found
        return None

    def fingerprint(self, target: Target, files: Sequence[str]) -> str:
        """A hash of ``target``'s records in ``files`` as stored (absent files count too), computed once per instance."""
        cache_key = (target.number, tuple(files))
        if cache_key not in self._fingerprints:
            sha = hashlib.sha256()
            for kind in files:
                found = self.raw_records(target, kind)
                sha.update(json.dumps(found[0] if found else None, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
            self._fingerprints[cache_key] = sha.hexdigest()[:16]
        return self._fingerprints[cache_key]

    def load(self, target: Target, parts: Sequence[Part], optional: Sequence[Part] = ()) -> TargetData:
        """Typed records of ``parts`` for ``target``; a missing file of a required part is an error.

        ``optional`` parts (e.g. the passages GA* trains on) are read where the data has them.
        """
        data = TargetData(target=target)
        for part in [*parts, *optional]:
            records = data.parts.setdefault(part.name, [])
            for kind in part.files:
                found = self.raw_records(target, kind)
                if found is None and part in optional:
                    continue
                if found is None:
                    raise RwkuError(
                        f"target {target.number} ({target.name}): no {kind}.json in {self.description}; "
                        f"add the file or drop its set from --sets"
                    )
                rows, where = found
                records.extend(part.parse(r, f"{where} record {i}") for i, r in enumerate(rows))
        return data


def data_fingerprint(data: RwkuData, targets: Sequence[Target], parts: Sequence[Part]) -> str:
    """A hash of the unit's records as stored: every file its parts read, per target (``--limit`` is a key field
    of its own)."""
    files = [file for part in parts for file in part.files]
    hashes = [data.fingerprint(target, files) for target in targets]
    return hashes[0] if len(hashes) == 1 else digest(hashes)
