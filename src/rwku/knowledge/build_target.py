"""Probes for a new target (``rwku build-target``): the RWKU pipeline for a person who is not among the 200, or for a
place, a work, an event or an organisation (``kind``: its probes are asked for with that kind's prompts,
:func:`rwku.knowledge.probe_prompts.prompts_for`, and its ``intro.json`` records the kind).

The RWKU probes were written by GPT-4 from the targets' Wikipedia pages, kept where open models answered them, then
checked by hand. :func:`build_target` does the same for one new target, from a source text the user gives:

1. **Passages.** The source text is cut into passages (paragraphs, long ones at sentence ends). They become the
   target's MIA forget texts (``forget_mia.json``) and GA*'s passages (``passage.json``); the first sentence of the
   text is its intro. Each neighbour's probes are written from the passages that mention it.
2. **Generation.** For each probe kind (fill-in-the-blank, question, each of the nine attack types, neighbour
   fill-in-the-blank and question; :mod:`rwku.knowledge.probe_prompts`) and each of the first ``max_passages``
   passages, the generator (:mod:`rwku.knowledge.generators`) is asked for ``per_call`` probes as a JSON array. An
   answer that is not such an array is asked again (``retries`` times, the error named in the request), then
   recorded as a failure: its probes are never written, not even in part.
3. **Screening.** A probe without a query or answer is dropped; a fill-in-the-blank probe needs one ``___`` blank
   and an answer that occurs in the source text; a query may not hold its own answer (a multiple-choice one holds
   it among other options, so it only may not be the answer alone);
   a query already written for the same file is a duplicate.
4. **Checking** (with ``check_models``). A fill-in-the-blank or question probe is kept only where at least one
   check model's answer, asked and scored exactly as ``rwku eval`` does (:func:`evaluate_probes`), has a ROUGE-L
   recall of at least ``threshold`` against the reference: the paper kept the probes open models could answer.
5. **Writing.** The target folder ``<out>/<N>_<Name>/`` holds the official files (``intro``, ``forget_level1-3``,
   ``neighbor_level1-2``, ``forget_mia``, ``passage``), ``prompts.json`` (every prompt and its version),
   ``build.json`` (generator, settings, source, yield) and ``report.json`` (every dropped probe and failed call, and
   why). It is written into a temporary sibling and renamed into place: it is complete or absent.

Each probe record holds the official fields and ``made_by`` (generator and prompt ``kind@version``), and, when
checked, each check model's answer and score. MIA retain texts and the utility sets are not about the target, so
RWKU shares them: ``shared`` copies those of an existing target (``--shared-data``, ``--shared-target``), with their
``subject`` renamed; without it the folder has only the target's own files and is evaluated with
``--sets forget,neighbor``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rwku import __version__
from rwku.data.loader import RwkuData
from rwku.data.schema import PERSON, Probe, Target, check_kind
from rwku.data.sources import TARGET_DIR
from rwku.errors import RwkuError
from rwku.evaluation.context import ProgressFactory, no_progress
from rwku.evaluation.sets import files_of
from rwku.evaluation.sets.probes import evaluate_probes
from rwku.knowledge.generators import Generator, ModelPool, Request
from rwku.knowledge.probe_prompts import (
    CROSS_LINGUAL_LANGUAGES,
    OUTPUT_FORMAT,
    PROMPTS,
    RETRY_NOTE,
    TERMS,
    ProbePrompt,
    prompt_records,
    prompts_for,
)
from rwku.knowledge.planting import chunks
from rwku.io import write_json_atomic

#: Files of the sets that are not about the target (MIA retain texts, the utility sets): shared as in RWKU.
SHARED_FILES: tuple[str, ...] = tuple(f for name in ("mia", "utility") for f in files_of(name) if f != "forget_mia")

#: Why a probe was dropped (``report.json``), in the order the yield table shows them.
MISSING = "missing query or answer"
NO_BLANK = "no single ___ blank"
NOT_IN_SOURCE = "answer not in source text"
ANSWER_IN_QUERY = "answer in the query"
DUPLICATE = "duplicate"
FAILED_CHECK = "failed check"
DROP_REASONS = (MISSING, NO_BLANK, NOT_IN_SOURCE, ANSWER_IN_QUERY, DUPLICATE, FAILED_CHECK)

BLANK = re.compile(r"_{2,}")


@dataclass(frozen=True)
class BuildSettings:
    """What decides which probes are asked for and which are kept."""

    per_call: int = 3
    max_passages: int = 8
    passage_words: int = 150
    retries: int = 2
    threshold: float = 1.0


@dataclass(frozen=True)
class Call:
    """One request for probes of one kind from one passage (a neighbour's: about that neighbour)."""

    prompt: ProbePrompt
    subject: str
    context: str
    where: str
    neighbor: str | None = None
    language: str | None = None

    @property
    def type(self) -> str:
        """The probe's official ``type`` (cross-lingual ones name their language, as RWKU's do)."""
        return self.prompt.type.format(language=self.language)

    def request(self, target: str, per_call: int, error: str | None = None) -> Request:
        user = self.prompt.instruction.format(subject=self.subject, context=self.context, target=target,
                                              language=self.language) + "\n\n" + OUTPUT_FORMAT.format(n=per_call)
        return Request(self.prompt.system, user + (RETRY_NOTE.format(error=error) if error else ""))


@dataclass
class Candidate:
    """One probe as the generator wrote it, and what the check models answered."""

    call: Call
    query: str
    answer: str
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"{self.call.prompt.set}_level{self.call.prompt.level}"

    def probe(self, target: str) -> Probe:
        prompt = self.call.prompt
        return Probe(query=self.query, answer=self.answer, level=prompt.level, type=self.call.type, subject=target,
                     neighbor=self.call.neighbor)

    def record(self, target: str, generator: str) -> dict[str, Any]:
        """The probe in the official schema, plus who made it and, when checked, what the check models answered."""
        record: dict[str, Any] = {"subject": target, "level": self.call.prompt.level, "type": self.call.type,
                                  "query": self.query, "answer": self.answer}
        if self.call.neighbor:
            record["neighbor"] = self.call.neighbor
        record["made_by"] = {"generator": generator, "prompt": self.call.prompt.label}
        if self.checks:
            record["check"] = self.checks
        return record


class Unusable(ValueError):
    """A generator answer that is not a JSON array of probe objects."""


# ---------------------------------------------------------------- source text


def read_source_text(path: Path) -> str:
    """The source text; a missing, unreadable or empty file is one clear line."""
    label = f"--source-text {path}"
    if not path.is_file():
        raise RwkuError(f"{label}: no such file; give a UTF-8 text file about the target (e.g. its Wikipedia article)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RwkuError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start}); convert the file to UTF-8") from None
    if not text.strip():
        raise RwkuError(f"{label}: the file is empty; give a text about the target")
    return text


def split_passages(text: str, max_words: int) -> list[str]:
    """Paragraphs (blank-line separated; one a line when the text has no blank line), long ones cut at sentence ends."""
    blocks = re.split(r"\n\s*\n", text) if re.search(r"\n\s*\n", text) else text.splitlines()
    return [piece for block in blocks if block.strip() for piece in chunks(" ".join(block.split()), max_words)]


def mentions(passage: str, name: str) -> bool:
    return name.casefold() in passage.casefold()


def squeeze(text: str) -> str:
    return " ".join(text.split()).casefold()


def plan_calls(target: str, passages: Sequence[str], neighbors: Sequence[str], settings: BuildSettings,
               kind: str = PERSON) -> list[Call]:
    """Every request, in ``kind``'s prompts: each target probe kind on each of the first passages, each neighbour
    probe kind on the passages naming that neighbour. A neighbour the text never names is an error (its probes would
    have no source)."""
    calls: list[Call] = []
    used = list(enumerate(passages))[:settings.max_passages]
    for prompt in prompts_for(kind):
        if prompt.set == "forget":
            calls += [Call(prompt, target, text, f"passage {i + 1}", language=CROSS_LINGUAL_LANGUAGES[i % len(CROSS_LINGUAL_LANGUAGES)])
                      for i, text in used]
            continue
        for neighbor in neighbors:
            named = [(i, text) for i, text in enumerate(passages) if mentions(text, neighbor)][:settings.max_passages]
            if not named:
                raise RwkuError(f"--neighbors {neighbor}: the source text never names {neighbor!r}; neighbour probes are "
                                f"written from the passages that name them: pick {TERMS[kind].neighbors}")
            calls += [Call(prompt, neighbor, text, f"passage {i + 1}", neighbor=neighbor) for i, text in named]
    return calls


# ---------------------------------------------------------------- generation


def parse_answer(text: str) -> list[Any]:
    """The JSON array in a generator answer (text around it is ignored; a single object counts as one item)."""
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        raise Unusable("no JSON array in the reply")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[min(starts):])
    except json.JSONDecodeError as exc:
        raise Unusable(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not items:
        raise Unusable("not a non-empty JSON array")
    return items


def generate(generator: Generator, calls: Sequence[Call], target: str, settings: BuildSettings
             ) -> tuple[dict[int, list[Any]], list[dict[str, Any]], Counter]:
    """Ask for every call, then again (with the error) for those whose answer was unusable, ``retries`` times.

    Returns the parsed items per call, the calls that failed every attempt (with each answer and error), and how
    many calls of each kind were retried.
    """
    parsed: dict[int, list[Any]] = {}
    attempts: dict[int, list[dict[str, str]]] = defaultdict(list)
    pending = list(range(len(calls)))
    for _ in range(settings.retries + 1):
        if not pending:
            break
        requests = [calls[i].request(target, settings.per_call, attempts[i][-1]["error"] if attempts[i] else None)
                    for i in pending]
        failed = []
        for i, text in zip(pending, generator.answer(requests)):
            try:
                parsed[i] = parse_answer(text)
            except Unusable as exc:
                attempts[i].append({"answer": text, "error": str(exc)})
                failed.append(i)
        pending = failed
    retried = Counter(calls[i].prompt.kind for i, tries in attempts.items() if tries and settings.retries)
    failures = [{"kind": calls[i].prompt.kind, "where": calls[i].where, "neighbor": calls[i].neighbor,
                 "attempts": attempts[i]} for i in pending]
    return parsed, failures, retried


def candidates_of(calls: Sequence[Call], parsed: dict[int, list[Any]]) -> list[Candidate | tuple[Call, Any]]:
    """Each parsed item as a :class:`Candidate`, or ``(call, item)`` where it lacks a query or an answer."""
    out: list[Candidate | tuple[Call, Any]] = []
    for i, items in sorted(parsed.items()):
        for item in items:
            query, answer = (item.get(k) if isinstance(item, dict) else None for k in ("query", "answer"))
            usable = isinstance(query, str) and isinstance(answer, (str, int, float)) and not isinstance(answer, bool)
            if usable and query.strip() and str(answer).strip():
                out.append(Candidate(calls[i], " ".join(query.split()), " ".join(str(answer).split())))
            else:
                out.append((calls[i], item))
    return out


# ---------------------------------------------------------------- screening and checking


def drop(call: Call, reason: str, query: Any, answer: Any, detail: Any = None) -> dict[str, Any]:
    entry = {"kind": call.prompt.kind, "where": call.where, "reason": reason, "query": query, "answer": answer}
    if call.neighbor:
        entry["neighbor"] = call.neighbor
    if detail is not None:
        entry["detail"] = detail
    return entry


def screen(found: Sequence[Candidate | tuple[Call, Any]], source: str) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Drop probes without a query or answer, fill-in-the-blank probes without one blank or whose answer is not in
    the source text, probes that give their answer away in the query (a multiple-choice query holds it among its
    options, but must be more than the answer),
    and repeated queries (per official file, compared without case, punctuation or spacing)."""
    kept: list[Candidate] = []
    dropped: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], str] = {}
    haystack = squeeze(source)
    for candidate in found:
        if not isinstance(candidate, Candidate):
            call, item = candidate
            dropped.append(drop(call, MISSING, item, None))
            continue
        call = candidate.call
        if call.prompt.blank:
            if len(BLANK.findall(candidate.query)) != 1:
                dropped.append(drop(call, NO_BLANK, candidate.query, candidate.answer))
                continue
            candidate.query = BLANK.sub("___", candidate.query)
            if squeeze(candidate.answer) not in haystack:
                dropped.append(drop(call, NOT_IN_SOURCE, candidate.query, candidate.answer))
                continue
        answer, query = squeeze(candidate.answer), squeeze(candidate.query)
        if answer == query or (call.type != "multiple choice" and answer in query):
            dropped.append(drop(call, ANSWER_IN_QUERY, candidate.query, candidate.answer))
            continue
        key = (candidate.file, re.sub(r"\W+", " ", candidate.query.casefold()).strip())
        if key in seen:
            dropped.append(drop(call, DUPLICATE, candidate.query, candidate.answer, f"same query as a {seen[key]} probe"))
            continue
        seen[key] = call.prompt.kind
        kept.append(candidate)
    return kept, dropped


def check(candidates: Sequence[Candidate], target: str, check_models: Sequence[str], pool: ModelPool,
          threshold: float, progress: ProgressFactory = no_progress) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Keep a fill-in-the-blank or question probe where a check model's answer, asked and scored as ``rwku eval``
    does, recalls at least ``threshold`` of the reference (ROUGE-L); attack probes pass unchecked, as in RWKU."""
    checked = [c for c in candidates if c.call.prompt.checked]
    if not check_models or not checked:
        return list(candidates), []
    for spec in check_models:
        ctx = pool.context(spec, progress)
        for set_name in ("forget", "neighbor"):
            group = [c for c in checked if c.call.prompt.set == set_name]
            if group:
                _, items = evaluate_probes(ctx, [c.probe(target) for c in group], set_name)
                for candidate, item in zip(group, items):
                    candidate.checks[spec] = {"output": item["output"], "score": item["score"]}
    kept, dropped = [], []
    for candidate in candidates:
        if not candidate.call.prompt.checked or any(c["score"] >= threshold for c in candidate.checks.values()):
            kept.append(candidate)
        else:
            dropped.append(drop(candidate.call, FAILED_CHECK, candidate.query, candidate.answer, candidate.checks))
    return kept, dropped


# ---------------------------------------------------------------- the target folder


def yield_table(calls: Sequence[Call], failures: Sequence[dict[str, Any]], retried: Counter, found: Sequence[Any],
                dropped: Sequence[dict[str, Any]], kept: Sequence[Candidate]) -> dict[str, dict[str, int]]:
    """Per probe kind: calls, calls retried, calls failed, probes written, dropped by reason, kept."""
    table: dict[str, dict[str, int]] = {}
    for prompt in PROMPTS:  # probe kinds are named alike for every kind of target
        kind = prompt.kind
        n_calls = sum(c.prompt.kind == kind for c in calls)
        if not n_calls:
            continue
        row = {"calls": n_calls, "retried": retried.get(kind, 0), "failed": sum(f["kind"] == kind for f in failures),
               "probes": sum((c.call if isinstance(c, Candidate) else c[0]).prompt.kind == kind for c in found)}
        row.update({reason: sum(d["kind"] == kind and d["reason"] == reason for d in dropped) for reason in DROP_REASONS})
        row["kept"] = sum(c.call.prompt.kind == kind for c in kept)
        table[kind] = row
    return table


def shared_records(data: RwkuData, donor: Target, name: str) -> dict[str, list[dict[str, Any]]]:
    """The shared files (MIA retain, utility) of ``donor``, their ``subject`` set to the new target."""
    records = {}
    for kind in SHARED_FILES:
        found = data.raw_records(donor, kind)
        if found is None:
            raise RwkuError(f"--shared-target {donor.number} ({donor.name}): {data.description} has no {kind}.json for it; "
                            "pick a target that has the MIA retain and utility files")
        records[kind] = [{**record, "subject": name} for record in found[0]]
    return records


def default_number(root: Path, name: str) -> int:
    """The number of ``name``'s folder in ``root`` where it has one, else one more than the highest there (or 1)."""
    found = {int(m.group(1)): m.group(2) for c in root.iterdir() if (m := TARGET_DIR.match(c.name))} if root.is_dir() else {}
    same = [n for n, rest in found.items() if rest == name.replace(" ", "_")]
    return same[0] if same else max(found, default=0) + 1


def target_folder(root: Path, name: str, number: int | None, replace: bool, kind: str = PERSON) -> Target:
    """The new target's number, name and kind, refused where its folder exists (unless ``replace``) or where another
    folder has its number (the loader numbers targets by folder)."""
    check_kind(kind, "--kind")
    if not name.strip() or "/" in name or name != name.strip():
        raise RwkuError(f"--name {name!r}: give the {kind}'s name without slashes or surrounding spaces")
    if root.exists() and not root.is_dir():
        raise RwkuError(f"--out {root}: is a file; give a folder (the new target goes into <out>/<N>_<Name>/)")
    target = Target(number=number or default_number(root, name), name=name, kind=kind)
    for child in root.iterdir() if root.is_dir() else []:
        match = TARGET_DIR.match(child.name)
        if match and int(match.group(1)) == target.number and child.name != target.slug:
            raise RwkuError(f"--number {target.number}: {child} already has that number; pick another or leave --number out")
    if (root / target.slug).exists() and not replace:
        raise RwkuError(f"--out {root}: {target.slug}/ exists; remove it, pick another --out or pass --force to replace it")
    return target


def write_folder(root: Path, slug: str, files: dict[str, Any]) -> Path:
    """Write every file into a temporary sibling, then rename it to ``root/slug`` (an old folder is moved aside and
    deleted): the folder is at every moment absent, the old one or the complete new one."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / slug
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{slug}-", dir=root))
    try:
        for stem, payload in files.items():
            write_json_atomic(tmp / f"{stem}.json", payload)
        if final.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".build-old-{slug}-", dir=root))
            aside.rmdir()
            final.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass
class BuildResult:
    folder: Path
    target: Target
    table: dict[str, dict[str, int]]
    counts: dict[str, int]
    failures: int
    dropped: int


def build_target(name: str, source_path: Path, out: Path, generator: Generator, pool: ModelPool, *,
                 neighbors: Sequence[str] = (), check_models: Sequence[str] = (), settings: BuildSettings = BuildSettings(),
                 number: int | None = None, shared: tuple[RwkuData, Target] | None = None, replace: bool = False,
                 kind: str = PERSON, progress: ProgressFactory = no_progress) -> BuildResult:
    """Write the probes of a new target of ``kind`` into ``out/<N>_<Name>/`` (see the module docstring for the
    steps)."""
    start = time.perf_counter()
    text = read_source_text(source_path)
    target = target_folder(out, name, number, replace, kind)
    passages = split_passages(text, settings.passage_words)
    calls = plan_calls(name, passages, neighbors, settings, kind)
    shared_files = shared_records(shared[0], shared[1], name) if shared else {}
    parsed, failures, retried = generate(generator, calls, name, settings)
    found = candidates_of(calls, parsed)
    screened, dropped = screen(found, text)
    kept, failed_check = check(screened, name, check_models, pool, settings.threshold, progress)
    dropped += failed_check
    table = yield_table(calls, failures, retried, found, dropped, kept)
    probe_files = {f"{s}_level{lv}": [] for s, lv in (("forget", "1"), ("forget", "2"), ("forget", "3"),
                                                      ("neighbor", "1"), ("neighbor", "2"))}
    for candidate in kept:
        probe_files[candidate.file].append(candidate.record(name, generator.spec))
    intro = f"Please forget {name}. {chunks(' '.join(text.split()), 1)[0]}"
    kind_entry = {} if kind == PERSON else {"kind": kind}  # a target without a kind is a person, as in RWKU's files
    build = {
        "target": name, "number": target.number, **kind_entry, "rwku_version": __version__, "generator": generator.describe(),
        "check_models": list(check_models), "settings": asdict(settings), "neighbors": list(neighbors),
        "source_text": {"path": str(source_path), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                        "words": len(text.split()), "passages": len(passages)},
        "shared": {"data": shared[0].description, "target": f"{shared[1].number} {shared[1].name}",
                   "files": list(SHARED_FILES)} if shared else None,
        "yield": table, "seconds": round(time.perf_counter() - start, 1),
    }
    files: dict[str, Any] = {
        "intro": [{"target": name, "intro": intro, **kind_entry}], **probe_files,
        "forget_mia": [{"subject": name, "text": p} for p in passages],
        "passage": [{"subject": name, "text": p} for p in passages],
        **shared_files, "prompts": prompt_records(kind), "report": {"yield": table, "failures": failures, "dropped": dropped},
        "build": build,
    }
    folder = write_folder(out, target.slug, files)
    return BuildResult(folder=folder, target=target, table=table, counts={k: len(v) for k, v in probe_files.items()},
                       failures=len(failures), dropped=len(dropped))
