"""Texts derived from a target's passages by fixed rules, for planting real targets (:mod:`rwku.knowledge.planting`).

A real RWKU target has only its Wikipedia passages; read twice, they teach SmolLM2-135M almost nothing its probes
ask. The probes ask about the target by name ("Luke Perry starred as ___ Andrews"), while the passages mostly say
"He" or "Perry", and they ask for one short span, which plain text never trains. From every sentence of every
passage these rules write, without reading any probe:

* a **statement**: the sentence with its subject made the target's full name (a leading "He"/"She" becomes the
  name, a leading "His"/"Her" the name's possessive, the first bare surname the full name); a sentence that then
  still does not name the target is skipped. The lead's "(born 23 April 1977)" or "(October 11, 1966 – March 4,
  2019)" becomes its own statement ("X was born on ...", "X died on ...").
* **blanks** (question and answer, trained as a chat turn with the loss on the answer): the statement with one
  span cut out, ``Fill in the blank: ... ___ ...`` answered by the span. Spans are years, dates, numbers and
  capitalised names or titles (runs of capitalised words, "of"/"the"/"and" allowed inside), never the target's
  own name; at most ``blanks_per_sentence`` per statement, the first in the sentence.
* a **who** question: a statement that opens with the full name and a lower-case word ("Luke Perry starred as
  Fred Andrews on Riverdale.") becomes "Who starred as Fred Andrews on Riverdale?", answered by the name.

:func:`drop_probe_questions` then removes every derived text that contains one of the target's probe questions
(compared as ROUGE normalises text): the rules never read the probes, and this guard makes sure that no rule
happens to write one. Nothing ever reads a probe's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from rwku.knowledge.planting import SENTENCE_END

#: A Wikipedia section heading glued into a passage ("== Early life ==Luke Perry was born ...").
HEADING = re.compile(r"={2,}[^=]*={2,}")
#: Words after a surname that are not the surname ("Jr.", "III"): the surname is the word before them.
NAME_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"})
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
#: Spans a blank may cut out, in order of preference within one match: dates, years and numbers, then names.
DATE = rf"(?:(?:{MONTHS}) \d{{1,2}}, \d{{4}}|\d{{1,2}} (?:{MONTHS}) \d{{4}}|(?:{MONTHS}) \d{{4}})"
NUMBER = r"(?:\d[\d,.]*\d|\d)"
CAPITALISED = r"[A-Z][\w'’.&-]*"
NAME_RUN = rf"{CAPITALISED}(?: (?:(?:of|the|and|de|del|du|la|le|von|van) )*{CAPITALISED})*"
SPAN = re.compile(rf"(?<![\w-])(?:{DATE}|{NAME_RUN}|{NUMBER})(?![\w-])")
#: The lead's lifespan in brackets: "(born April 23, 1977)" or "(October 11, 1966 – March 4, 2019)".
LIFESPAN = re.compile(rf"\((?:[^()]*?;\s*)?(?:born\s+(?P<born>{DATE})|(?P<from>{DATE})\s*[–-]\s*(?P<to>{DATE}))\)")
#: Capitalised words that start many sentences and are never a fact worth a blank.
STOP_SPANS = frozenset({"He", "She", "His", "Her", "They", "Their", "It", "Its", "The", "A", "An", "In", "On", "At",
                        "After", "Before", "During", "While", "When", "As", "This", "That", "These", "Those", "By",
                        "For", "From", "With", "Although", "However", "Following", "Since", "Until", "Also", "Both",
                        "I", "We", "You", "There", "Then", "Later", "According", "Despite", "Of", "To", "And"})


@dataclass(frozen=True)
class DerivedText:
    """One derived text: ``kind`` statement (``text``) or qa (``text`` the question, ``answer`` its answer)."""

    kind: str
    text: str
    answer: str = ""


def surname(name: str) -> str:
    """The word a passage calls the target by: the last word of the name before any comma, suffixes skipped
    ("Prince Harry, Duke of Sussex" -> "Harry", "Martin Luther King Jr." -> "King")."""
    words = name.split(",")[0].split()
    while len(words) > 1 and words[-1].casefold() in NAME_SUFFIXES:
        words.pop()
    return words[-1] if words else name


def sentences(passage: str) -> list[str]:
    """The passage's sentences, section headings removed."""
    text = " ".join(HEADING.sub(" ", passage).split())
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.split()) >= 4]


def anchored(sentence: str, name: str) -> str | None:
    """The sentence with its subject made ``name`` (see the module docstring), or None when it does not name the
    target (after the rules)."""
    text = re.sub(r"\s*\([^()]*\)", "", sentence).strip()  # brackets: pronunciations, dates, asides
    if name in text:
        return text
    pronoun = re.match(r"(He|She)\s+", text)
    if pronoun:
        return f"{name} {text[pronoun.end():]}"
    possessive = re.match(r"(His|Her)\s+", text)
    if possessive:
        return f"{name}'s {text[possessive.end():]}"
    short = surname(name)
    found = re.search(rf"(?<![\w.-]){re.escape(short)}(?![\w-])", text) if short != name else None
    if found is None:
        return None
    before = [w.strip("\"'“”‘’") for w in text[:found.start()].split()]
    if len(before) > 1 and before[-1][:1].isupper() and before[-1][-1:].isalnum():
        return text  # the surname ends another form of the name ("Coy Luther "Luke" Perry III")
    return text[:found.start()] + name + text[found.end():]


def lifespan_statements(sentence: str, name: str) -> list[str]:
    """The lead's bracketed birth (and death) date as statements about ``name``."""
    match = LIFESPAN.search(sentence)
    if match is None:
        return []
    if match.group("born"):
        return [f"{name} was born on {match.group('born')}."]
    return [f"{name} was born on {match.group('from')}.", f"{name} died on {match.group('to')}."]


def blank_spans(statement: str, name: str, limit: int) -> list[tuple[int, int]]:
    """Up to ``limit`` spans of ``statement`` to cut out for a blank: not the target's name, not a word that only
    starts the sentence, not the whole statement."""
    spans = []
    for match in SPAN.finditer(statement):
        span = match.group(0).rstrip(".,")
        if not span or span in STOP_SPANS or span in name or name in span:
            continue
        if len(span.split()) >= len(statement.split()) - 1:
            continue
        spans.append((match.start(), match.start() + len(span)))
        if len(spans) == limit:
            break
    return spans


def who_question(statement: str, name: str) -> str | None:
    """"Who ...?" from a statement that opens with ``name`` and a lower-case word, else None."""
    rest = statement[len(name):] if statement.startswith(name + " ") else ""
    words = rest.split()
    if len(words) < 3 or not words[0][0].islower():
        return None
    return "Who " + rest.strip().rstrip(".!") + "?"


def derive(passages: Iterable[str], name: str, blanks_per_sentence: int = 2) -> list[DerivedText]:
    """Statements, blanks and who-questions written from ``passages`` by the rules of this module, in passage and
    sentence order, each text once."""
    out: list[DerivedText] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, text: str, answer: str = "") -> None:
        if (text, answer) not in seen:
            seen.add((text, answer))
            out.append(DerivedText(kind, text, answer))

    for passage in passages:
        for sentence in sentences(passage):
            found = [*lifespan_statements(sentence, name)]
            statement = anchored(sentence, name)
            if statement is not None:
                found.append(statement)
            for text in found:
                add("statement", text)
                for start, end in blank_spans(text, name, blanks_per_sentence):
                    add("qa", f"Fill in the blank: {text[:start]}___{text[end:]}", text[start:end])
                question = who_question(text, name)
                if question is not None:
                    add("qa", question, name)
    return out


def normalised_words(text: str) -> str:
    """``text`` as ROUGE's answer normalisation sees it, padded with spaces for whole-word containment; a blank
    (``___``) stays a word, so a statement does not contain the blanked question of its own fact."""
    from rwku.evaluation.metrics import normalize_answer

    return f" {normalize_answer(re.sub(r'_{2,}', ' blankmark ', text))} "


def drop_probe_questions(texts: Sequence[DerivedText], questions: Iterable[str]) -> tuple[list[DerivedText], int]:
    """``texts`` without those that contain any of ``questions`` (normalised, whole words), and how many went."""
    probes = [q for q in (normalised_words(q) for q in questions) if q.strip()]
    kept = [t for t in texts if not any(q in normalised_words(f"{t.text} {t.answer}") for q in probes)]
    return kept, len(texts) - len(kept)
