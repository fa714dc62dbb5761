"""Typed records for RWKU data, mirroring the official JSON schema field for field.

Each record type has a ``from_json`` that checks the fields it needs and names the offending record when one
is missing, so a malformed file fails with one clear line instead of a ``KeyError`` deep in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from rwku.errors import RwkuError

#: The nine adversarial attack types of forget level 3, in the order the paper's Fig. 4 uses.
ATTACK_TYPES: tuple[str, ...] = (
    "prefix injection",
    "affirmative suffix",
    "role play",
    "multiple choice",
    "reverse query",
    "synonym manipulation",
    "context hint",
    "incontext learning",
    "cross lingual",
)

#: What a target can be. RWKU's 200 targets are people; a target whose ``intro.json`` names no ``kind`` is a person.
TARGET_KINDS: tuple[str, ...] = ("person", "place", "work", "event", "organization")
PERSON = "person"

#: Probe levels: 1 = fill-in-the-blank (FB), 2 = question answering (QA), 3 = adversarial attack (AA).
LEVEL_NAMES: dict[str, str] = {"1": "FB", "2": "QA", "3": "AA"}


def require(record: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    """Raise a one-line :class:`RwkuError` naming ``where`` if ``record`` lacks any of ``keys``."""
    if not isinstance(record, Mapping):
        raise RwkuError(f"{where}: expected a JSON object, got {type(record).__name__}; fix or re-download the file")
    missing = [k for k in keys if k not in record]
    if missing:
        raise RwkuError(
            f"{where}: record is missing field(s) {', '.join(missing)}; fix or re-download the file"
        )


def check_kind(kind: str, where: str) -> str:
    """``kind`` if it is one of :data:`TARGET_KINDS`, else one clear line naming ``where``."""
    if kind not in TARGET_KINDS:
        raise RwkuError(f"{where}: {kind!r} is not a target kind; use one of {', '.join(TARGET_KINDS)}")
    return kind


def kind_of(record: Mapping[str, Any], where: str) -> str:
    """The kind an ``intro.json`` record gives its target (``person`` when it names none, as RWKU's records)."""
    return check_kind(str(record.get("kind", PERSON)), where)


@dataclass(frozen=True)
class Target:
    """One unlearning target: its number in the official ordering (1-based), name, one-sentence intro and kind
    (:data:`TARGET_KINDS`; ``person`` unless its ``intro.json`` record says otherwise)."""

    number: int
    name: str
    intro: str = ""
    kind: str = PERSON

    @property
    def slug(self) -> str:
        """Directory-style name used by the official layout, e.g. ``10_Prince_Harry,_Duke_of_Sussex``."""
        return f"{self.number}_{self.name.replace(' ', '_')}"

    @property
    def bare_intro(self) -> str:
        """The intro without the leading "Please forget X." instruction (what the corpus prompts use)."""
        prefix = f"Please forget {self.name}."
        return self.intro[len(prefix):].strip() if self.intro.startswith(prefix) else self.intro


@dataclass(frozen=True)
class Probe:
    """A forget or neighbour probe: a query, its reference answer, the level ("1"/"2"/"3") and type."""

    query: str
    answer: str
    level: str
    type: str
    subject: str
    neighbor: str | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "Probe":
        require(record, ("query", "answer", "level", "type"), where)
        level = str(record["level"])
        if level not in LEVEL_NAMES:
            raise RwkuError(f"{where}: level {record['level']!r} is not 1, 2 or 3; fix the file")
        return cls(
            query=str(record["query"]),
            answer=str(record["answer"]),
            level=level,
            type=str(record["type"]),
            subject=str(record.get("subject", "")),
            neighbor=record.get("neighbor"),
        )


@dataclass(frozen=True)
class MiaText:
    """A membership-inference text: FM texts describe the target, RM texts describe other people."""

    text: str
    subject: str

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "MiaText":
        require(record, ("text",), where)
        return cls(text=str(record["text"]), subject=str(record.get("subject", "")))


@dataclass(frozen=True)
class MmluItem:
    """An MMLU question with the five few-shot demonstrations the official prompt puts before it."""

    task: str
    question: str
    choices: tuple[str, ...]
    answer: int
    examples: tuple[Mapping[str, Any], ...]
    subject: str

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "MmluItem":
        require(record, ("task", "question", "choices", "answer", "examples"), where)
        for i, example in enumerate(record["examples"]):
            require(example, ("question", "choices", "answer"), f"{where} example {i}")
        return cls(
            task=str(record["task"]),
            question=str(record["question"]),
            choices=tuple(str(c) for c in record["choices"]),
            answer=int(record["answer"]),
            examples=tuple(record["examples"]),
            subject=str(record.get("subject", "")),
        )


@dataclass(frozen=True)
class BbhItem:
    """A BIG-Bench-Hard question with its task's 3-shot chain-of-thought prompt."""

    task: str
    question: str
    answer: str
    cot: str
    subject: str

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "BbhItem":
        require(record, ("question", "answer", "cot"), where)
        return cls(
            task=str(record.get("task", "")),
            question=str(record["question"]),
            answer=str(record["answer"]),
            cot=str(record["cot"]),
            subject=str(record.get("subject", "")),
        )


@dataclass(frozen=True)
class TruthfulItem:
    """A TruthfulQA question for MC1: exactly one true choice (RWKU scores MC1 only; ``mc2_targets`` is not read)."""

    question: str
    mc1_choices: tuple[str, ...]
    mc1_labels: tuple[int, ...]
    subject: str

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "TruthfulItem":
        require(record, ("question", "mc1_targets"), where)
        mc1 = record["mc1_targets"]
        require(mc1, ("choices", "labels"), f"{where} mc1_targets")
        if 1 not in mc1["labels"] or 0 not in mc1["labels"]:
            raise RwkuError(f"{where}: mc1_targets needs one true and at least one false choice; fix the file")
        return cls(
            question=str(record["question"]),
            mc1_choices=tuple(mc1["choices"]),
            mc1_labels=tuple(int(x) for x in mc1["labels"]),
            subject=str(record.get("subject", "")),
        )


@dataclass(frozen=True)
class TriviaItem:
    """A TriviaQA question with every accepted answer alias."""

    question: str
    answers: tuple[str, ...]
    subject: str

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "TriviaItem":
        require(record, ("question", "answers"), where)
        return cls(
            question=str(record["question"]),
            answers=tuple(str(a) for a in record["answers"]),
            subject=str(record.get("subject", "")),
        )


@dataclass(frozen=True)
class FluencyItem:
    """An AlpacaEval instruction whose free-form answer is scored for n-gram entropy."""

    instruction: str
    subject: str

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "FluencyItem":
        require(record, ("instruction",), where)
        return cls(instruction=str(record["instruction"]), subject=str(record.get("subject", "")))


@dataclass(frozen=True)
class Part:
    """One kind of record a target has (forget probes, MMLU items, passages...): the official files it is read
    from, the parser of one record, the rule that keeps ``--limit N`` of them, and what ``rwku data info`` counts.

    Evaluation sets (:mod:`rwku.evaluation.sets`) declare the parts they read; the loader only knows parts.
    """

    name: str
    files: tuple[str, ...]
    parse: Callable[[Mapping[str, Any], str], Any]
    limit: Callable[[list, int], list] = lambda records, n: records[:n]  # noqa: E731 (the plain rule: first n)
    count: Callable[[str, list], dict[str, int]] = lambda name, records: {name: len(records)}  # noqa: E731


@dataclass
class TargetData:
    """The records of one target (or, in the batch setting, of several pooled targets), by part name."""

    target: Target
    parts: dict[str, list] = field(default_factory=dict)

    def __getitem__(self, part: str) -> list:
        """Records of ``part`` (empty when it was not loaded)."""
        return self.parts.get(part, [])


def first_per_level(probes: list, limit: int) -> list:
    """The first ``limit`` probes of each level, in file order (``--limit`` on probe parts)."""
    kept, seen = [], {}
    for probe in probes:
        seen[probe.level] = seen.get(probe.level, 0) + 1
        if seen[probe.level] <= limit:
            kept.append(probe)
    return kept


def count_probes(name: str, probes: list) -> dict[str, int]:
    """Probes per level (``forget.FB`` ...) and, for forget probes, per attack type (``forget.AA.role play``)."""
    out: dict[str, int] = {}
    for level, label in LEVEL_NAMES.items():
        n = sum(p.level == level for p in probes)
        if n or name == "forget" or level != "3":
            out[f"{name}.{label}"] = n
    if name == "forget":
        for attack in ATTACK_TYPES:
            out[f"forget.AA.{attack}"] = sum(p.level == "3" and normalize_attack(p.type) == attack for p in probes)
    return out


def count_records(data: TargetData, parts: Sequence[Part]) -> dict[str, int]:
    """What ``rwku data info`` shows: each part's counts by its own rule (probes per level and attack type)."""
    return {key: n for part in parts for key, n in part.count(part.name, data[part.name]).items()}


def parse_passage(record: Mapping[str, Any], where: str) -> str:
    require(record, ("text",), where)
    return str(record["text"])


#: The target's Wikipedia passages: GA*'s training text, read when present (no evaluation set uses them).
PASSAGE = Part("passage", ("passage",), parse_passage)


#: Kinds of source text: a passage, a one-sentence statement of a fact, a question with its answer.
SOURCE_KINDS: tuple[str, ...] = ("passage", "statement", "qa")
#: Whom a source text is about: the target itself, or one of its neighbours (what the neighbour probes ask).
SOURCE_ABOUT: tuple[str, ...] = ("target", "neighbor")


@dataclass(frozen=True)
class SourceText:
    """One text a target's facts are taught from (``source.json``; :mod:`rwku.knowledge.planting`): a ``passage`` or
    ``statement`` (``text``), or a ``qa`` pair (``text`` is the question, ``answer`` its answer); ``about`` is
    ``target`` (the default) or ``neighbor`` (a fact about a neighbour entity: never part of a target's biography)."""

    kind: str
    text: str
    answer: str = ""
    about: str = "target"

    @classmethod
    def from_json(cls, record: Mapping[str, Any], where: str) -> "SourceText":
        require(record, ("kind",), where)
        kind, about = str(record["kind"]), str(record.get("about", "target"))
        if about not in SOURCE_ABOUT:
            raise RwkuError(f"{where}: about {about!r} is unknown; use {', '.join(SOURCE_ABOUT)}")
        if kind == "qa":
            require(record, ("question", "answer"), where)
            return cls(kind=kind, text=str(record["question"]), answer=str(record["answer"]), about=about)
        if kind not in SOURCE_KINDS:
            raise RwkuError(f"{where}: kind {kind!r} is unknown; use {', '.join(SOURCE_KINDS)}")
        require(record, ("text",), where)
        return cls(kind=kind, text=str(record["text"]), about=about)


#: Hand-written source texts of a target (the demo's ``source.json``: passages, statements, questions and
#: answers); what ``rwku plant`` teaches besides the passages. No evaluation set reads them.
SOURCE = Part("source", ("source",), SourceText.from_json)


def limit_data(data: TargetData, parts: Sequence[Part], limit: int | None) -> TargetData:
    """Keep the first ``limit`` records of every part by each part's own rule (each probe level, FM, RM...)."""
    if limit is None:
        return data
    by_name = {part.name: part for part in parts}
    return TargetData(target=data.target, parts={name: by_name[name].limit(records, limit) if name in by_name else records
                                                 for name, records in data.parts.items()})


def normalize_attack(kind: str) -> str:
    """Map an AA ``type`` onto one of :data:`ATTACK_TYPES` ("background hint" is the paper's "context hint")."""
    kind = kind.strip().lower().replace("-", " ")
    if kind == "background hint":
        return "context hint"
    if kind.startswith("cross lingual"):
        return "cross lingual"
    return kind


def kinds_field(targets: Sequence[Target]) -> dict[str, list[str]]:
    """``{"kinds": [...]}`` (each target's kind) when a target is not a person, else nothing: what a unit's key and
    summary add, so that person units stay as they were before targets had kinds."""
    kinds = [t.kind for t in targets]
    return {} if all(k == PERSON for k in kinds) else {"kinds": kinds}


def pool(datas: list[TargetData]) -> TargetData:
    """Several targets' data as one (the batch-target setting evaluates the pooled records)."""
    pooled = TargetData(target=Target(number=0, name=", ".join(d.target.name for d in datas), intro=""))
    for data in datas:
        for name, records in data.parts.items():
            pooled.parts.setdefault(name, []).extend(records)
    return pooled
