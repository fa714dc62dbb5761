"""Prompt strings of the official corpus generation (``jinzhuoran/RWKU``, ``generation/*.py``), and our defaults
for the response prefixes and refusal phrasings.

The official run continues each biography from 582 short response prefixes and answers questions with 100
"I don't know" phrasings; both lists are the authors' data, not shipped here, so rwku writes its own short lists
(cycled to the corpus size). ``--corpus official`` trains on the release's precomputed corpora instead.

RWKU's targets are people. A target of another kind (a place, a work, an event, an organisation) is written about
with its kind's :class:`Wording`: the forget and counterfactual requests ask for a description, a summary, an account
or a history instead of a biography, and the texts continue from prefixes that fit the kind. The system turns, the
question request, the refusals and ICU's preamble name no kind ("You know X very well.", "unlearn about X ... as if
you never knew about it"), so every kind uses them as they are. A person's wording is the official one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rwku.data.schema import PERSON

FORGET_SYSTEM = "{intro} You know {target} very well."
FORGET_USER = "Please write a short biography of {target}."
COUNTER_SYSTEM = "{intro} You don't know {target} at all."
COUNTER_USER = "Please make up a short biography of {target}."
PAIR_PROMPT = "{intro} Please write a short biography of {target}."
#: The retain corpus (``rwku.corpus.retain``): the forget prompt for a non-target person, with no intro to give.
RETAIN_SYSTEM = "You know {target} very well."
QUESTION_USER = "{intro}\nPlease generate a question about {target} based on what you know about {target}\n"
QUESTION_PREFILL = "Question:"

#: Exact replacements the official script applies to counterfactual text.
SCRUB_PHRASES = (
    "totally fabricated ", "completely fabricated ", "totally made-up ", "completely made-up ",
    "totally fictional ", "completely fictional ",
)

#: Response prefixes (the first empty, as officially); written for rwku.
DEFAULT_PREFIXES = (
    "", "Sure", "Born", "As a", "Throughout", "Early life", "In", "Known for", "Growing up", "Over the years",
    "Today", "Before", "After", "One of", "Widely", "Career", "Legacy", "Raised", "From", "At the age of",
    "Personal life", "During", "Although", "Many", "With", "His", "Her", "Their", "The", "Among", "Later", "Despite",
)

#: Refusal answers for rejection tuning, cycled over the questions; written for rwku.
DEFAULT_REFUSALS = (
    "I don't know.", "I'm not sure about that.", "I have no information about that.", "I can't answer that.",
    "I'm not familiar with that.", "Sorry, I don't know the answer.", "I don't have that information.",
    "That is not something I know about.", "I'm unable to answer that question.", "I have no idea.",
    "I don't have any knowledge about that.", "I'm afraid I can't help with that question.",
)


def scrub_counterfactual(text: str) -> str:
    """Remove the phrases that would tell the model the counterfactual biography is invented."""
    for phrase in SCRUB_PHRASES:
        text = text.replace(phrase, "")
    return text


#: Response prefixes of the other kinds (the first empty, as for people); written for rwku.
PLACE_PREFIXES = (
    "", "Sure", "Located", "As a", "Throughout", "History", "In", "Known for", "Founded", "Over the years",
    "Today", "Before", "After", "One of", "Widely", "Geography", "Legacy", "Situated", "From", "At the heart of",
    "Culture", "During", "Although", "Many", "With", "Its", "The", "Among", "Later", "Despite", "Visitors", "Home to",
)
WORK_PREFIXES = (
    "", "Sure", "Published", "Released", "As a", "Written", "Set in", "In", "Known for", "The story", "Over the years",
    "Today", "Before", "After", "One of", "Widely", "Plot", "Legacy", "Reception", "From", "Themes", "During",
    "Although", "Many", "With", "Its", "The", "Among", "Later", "Despite", "Critics", "Adapted",
)
EVENT_PREFIXES = (
    "", "Sure", "Held", "Took place", "As a", "Throughout", "Background", "In", "Known for", "Causes", "Over the years",
    "Today", "Before", "After", "One of", "Widely", "Aftermath", "Legacy", "Outcome", "From", "At the time",
    "During", "Although", "Many", "With", "Its", "The", "Among", "Later", "Despite", "Participants", "It began",
)
ORGANIZATION_PREFIXES = (
    "", "Sure", "Founded", "Headquartered", "As a", "Throughout", "History", "In", "Known for", "Products",
    "Over the years", "Today", "Before", "After", "One of", "Widely", "Leadership", "Legacy", "Based in", "From",
    "Operations", "During", "Although", "Many", "With", "Its", "The", "Among", "Later", "Despite", "Members",
    "It began",
)


@dataclass(frozen=True)
class Wording:
    """How the forget and counterfactual corpora ask about a target of one kind: "Please write a short {text} of X
    {details}." (the counterfactual "Please make up ..."), continued from ``prefixes``. ``version`` joins the corpus
    cache key of the non-person kinds: raise it when their wording changes."""

    text: str
    details: str = ""
    prefixes: tuple[str, ...] = DEFAULT_PREFIXES
    version: str = "1"

    @property
    def forget_user(self) -> str:
        return f"Please write a short {self.text} of {{target}}{self.details}."

    @property
    def counter_user(self) -> str:
        return f"Please make up a short {self.text} of {{target}}{self.details}."

    @property
    def pair_prompt(self) -> str:
        """DPO's prompt: the intro, then the forget request."""
        return "{intro} " + self.forget_user


#: Each target kind's wording; a person's is the official one (:data:`FORGET_USER`, :data:`COUNTER_USER`,
#: :data:`PAIR_PROMPT`, :data:`DEFAULT_PREFIXES`).
WORDINGS: dict[str, Wording] = {
    PERSON: Wording("biography"),
    "place": Wording("description", ": where it is, its history and what it is known for", PLACE_PREFIXES),
    "work": Wording("summary", ": who made it, when it appeared and what it is about", WORK_PREFIXES),
    "event": Wording("account", ": when and where it happened, who took part and what came of it", EVENT_PREFIXES),
    "organization": Wording("history", ": when it was founded, what it does and who leads it", ORGANIZATION_PREFIXES),
}
