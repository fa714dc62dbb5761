"""The zero-shot retain corpus: short biographies the model writes of well-known people who are not RWKU targets.

RWKU gives no retain set, so methods with a retain term (GradDiff, NPO-GD, NPO-KL, IdkNLL, RMU) train to keep
what the model writes about *other* people: ``corpus/people/people.txt`` (140 names written for rwku; none is a
target or a neighbour entity of the RWKU release or the demo data, see its README). Each text answers the forget
corpus's prompt for one person (system "You know {person} very well.", no intro), continued from the same response
prefixes, with the same sizes and sampling settings (:class:`~rwku.corpus.build.CorpusSpec`): text ``i`` is about
person ``i mod 140`` from prefix ``i mod len(prefixes)``. The texts do not depend on the target, so they are cached
once per model and settings; the unit's exclusion is applied when they are read: a text that mentions a target name
or a neighbour entity of the unit (as a whole word, see :func:`name_forms`) is dropped, and the count is recorded.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from rwku.corpus.build import RETAIN, CorpusSpec, cached_texts, hash_key, run_payload, sample, spec_payload
from rwku.corpus.prompts import FORGET_USER, RETAIN_SYSTEM
from rwku.data.loader import RwkuData
from rwku.data.schema import Target
from rwku.models.loading import LoadedModel, cache_root
from rwku.models.prompting import PromptFormat

#: The official files whose records name a neighbour entity (field ``neighbor``).
NEIGHBOR_FILES = ("neighbor_level1", "neighbor_level2")


@lru_cache(maxsize=1)
def retain_people() -> tuple[str, ...]:
    """The shipped list of people the retain corpus is about, in file order."""
    text = resources.files("rwku.corpus").joinpath("people", "people.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def people_fingerprint() -> str:
    """A hash of the list: part of the corpus's cache key and of a run's key (another list is another corpus)."""
    return hash_key({"people": list(retain_people())})


def neighbor_entities(data: RwkuData, target: Target) -> list[str]:
    """The neighbour entities of ``target``'s neighbour probes (none where the data has no neighbour files)."""
    names: dict[str, None] = {}
    for kind in NEIGHBOR_FILES:
        found = data.raw_records(target, kind)
        for record in found[0] if found else []:
            if record.get("neighbor"):
                names[str(record["neighbor"])] = None
    return list(names)


def excluded_names(data: RwkuData, targets: Sequence[Target]) -> list[str]:
    """What no retain text of a unit may mention: its targets' names and their neighbour entities."""
    names: dict[str, None] = {}
    for target in targets:
        names.update(dict.fromkeys([target.name, *neighbor_entities(data, target)]))
    return list(names)


def name_forms(name: str) -> set[str]:
    """The forms a text may name an entity by: as written, without a disambiguating "(…)" ("Heat (1995 film)" ->
    "Heat"), and before a title's comma ("Prince Harry, Duke of Sussex" -> "Prince Harry")."""
    bare = re.sub(r"\s*\([^)]*\)\s*$", "", name).strip()
    forms = {name.strip(), bare, bare.split(",")[0].strip()}
    return {form for form in forms if form}


def mention_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One case-sensitive whole-word pattern for every form of ``names`` (None when there is nothing to exclude)."""
    forms = sorted({form for name in names for form in name_forms(name)}, key=len, reverse=True)
    if not forms:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(form) for form in forms) + r")(?!\w)")


def drop_mentions(texts: Sequence[str], names: Iterable[str]) -> tuple[list[str], int]:
    """``texts`` without those mentioning any of ``names``, and how many were dropped."""
    pattern = mention_pattern(names)
    kept = [text for text in texts if pattern is None or not pattern.search(text)]
    return kept, len(texts) - len(kept)


def retain_prompts(spec: CorpusSpec, prompts: PromptFormat) -> tuple[list[str], list[str]]:
    """The person and the response prefix of each of the ``spec.size`` texts, and the rendered prompts."""
    people = retain_people()
    persons = [people[i % len(people)] for i in range(spec.size)]
    prefixes = [spec.prefixes[i % len(spec.prefixes)] for i in range(spec.size)]
    rendered = [prompts.render(FORGET_USER.format(target=person), system=RETAIN_SYSTEM.format(target=person)) + prefix
                for person, prefix in zip(persons, prefixes)]
    return prefixes, rendered


def generate_retain(lm: LoadedModel, spec: CorpusSpec, prompts: PromptFormat,
                    progress: Callable[[str, int], Any]) -> list[str]:
    prefixes, rendered = retain_prompts(spec, prompts)
    with progress("retain corpus · other people", len(rendered)) as advance:
        raw = sample(lm, rendered, spec, spec.max_new_tokens, advance, stream=RETAIN)
    return [prefix + text for prefix, text in zip(prefixes, raw)]


def retain_cache_key(lm: LoadedModel, spec: CorpusSpec, prompts: PromptFormat) -> str:
    return hash_key({**run_payload(lm, spec), "kind": RETAIN, "people": people_fingerprint(), "style": prompts.style,
                     **spec_payload(RETAIN, spec)})


def build_retain(lm: LoadedModel, spec: CorpusSpec, *, prompts: PromptFormat, progress: Callable[[str, int], Any],
                 excluded: Sequence[str], cache_dir: Path | None = None) -> tuple[list[str], int]:
    """The retain texts (generated once, then read from the cache) without those mentioning ``excluded``; returns
    (texts kept, number dropped)."""
    path = (cache_dir or cache_root() / "corpora") / f"retain-{retain_cache_key(lm, spec, prompts)}.json"
    texts = cached_texts(path, lambda: generate_retain(lm, spec, prompts, progress),
                         {"kind": RETAIN, "model": lm.source, "people": list(retain_people()), "spec": asdict(spec)})
    return drop_mentions(texts, excluded)
