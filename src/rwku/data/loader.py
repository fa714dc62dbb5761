"""Load RWKU data for selected targets from one or more sources, into typed records.

``RwkuData.open(["../shared/rwku-data/strzar-purge"])`` finds the per-target probes and the merged utility/MIA
files; ``select("1-10")`` resolves a target spec; ``load(target, sets)`` returns a :class:`TargetData` with
every record checked.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

from rwku.data.schema import (
    BbhItem,
    FluencyItem,
    MiaText,
    MmluItem,
    Probe,
    Target,
    TargetData,
    TriviaItem,
    TruthfulItem,
)
from rwku.data.sources import Source, discover_sources
from rwku.errors import RwkuError

#: Evaluation sets and the official files each one reads.
SET_KINDS: dict[str, tuple[str, ...]] = {
    "forget": ("forget_level1", "forget_level2", "forget_level3"),
    "neighbor": ("neighbor_level1", "neighbor_level2"),
    "mia": ("forget_mia", "retain_mia"),
    "utility": ("retain_mmlu", "retain_bbh", "truthful", "triviaqa", "fluency"),
}
ALL_SETS: tuple[str, ...] = tuple(SET_KINDS)

#: Official file -> (TargetData attribute, record parser).
KIND_FIELDS: dict[str, tuple[str, Callable[[dict[str, Any], str], Any]]] = {
    "forget_level1": ("forget", Probe.from_json),
    "forget_level2": ("forget", Probe.from_json),
    "forget_level3": ("forget", Probe.from_json),
    "neighbor_level1": ("neighbor", Probe.from_json),
    "neighbor_level2": ("neighbor", Probe.from_json),
    "forget_mia": ("forget_mia", MiaText.from_json),
    "retain_mia": ("retain_mia", MiaText.from_json),
    "retain_mmlu": ("mmlu", MmluItem.from_json),
    "retain_bbh": ("bbh", BbhItem.from_json),
    "truthful": ("truthful", TruthfulItem.from_json),
    "triviaqa": ("triviaqa", TriviaItem.from_json),
    "fluency": ("fluency", FluencyItem.from_json),
}


def parse_sets(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"forget,mia"`` -> ``("forget", "mia")`` in canonical order; ``all`` means every set."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["all"]:
        return ALL_SETS
    unknown = [n for n in names if n not in SET_KINDS]
    if unknown or not names:
        raise RwkuError(f"--sets {','.join(names) or '(empty)'}: unknown set {', '.join(unknown) or ''}; choose from {','.join(ALL_SETS)} or all")
    return tuple(s for s in ALL_SETS if s in names)


class RwkuData:
    """RWKU data from several sources, asked in order: the first that has a file for a target wins."""

    def __init__(self, sources: Sequence[Source]):
        self.sources = list(sources)

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

    def load(self, target: Target, sets: Sequence[str] = ALL_SETS, optional: Sequence[str] = ()) -> TargetData:
        """Typed data of ``sets`` for ``target``; a missing file for a requested set is an error.

        ``optional`` names extra official files (e.g. ``passage``) to read when present.
        """
        data = TargetData(target=target)
        for kind in [k for s in sets for k in SET_KINDS[s]]:
            found = self.raw_records(target, kind)
            if found is None:
                raise RwkuError(
                    f"target {target.number} ({target.name}): no {kind}.json in {self.description}; "
                    f"add the file or drop its set from --sets"
                )
            records, where = found
            attribute, parse = KIND_FIELDS[kind]
            getattr(data, attribute).extend(parse(r, f"{where} record {i}") for i, r in enumerate(records))
        if "passage" in optional:
            found = self.raw_records(target, "passage")
            if found is not None:
                records, where = found
                data.passage.extend(str(r["text"]) for r in records if isinstance(r, dict) and "text" in r)
        return data
