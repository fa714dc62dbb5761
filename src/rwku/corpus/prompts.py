"""Prompt strings of the official corpus generation (``jinzhuoran/RWKU``, ``generation/*.py``), and our defaults
for the response prefixes and refusal phrasings.

The official run continues each biography from 582 short response prefixes and answers questions with 100
"I don't know" phrasings; both lists are the authors' data, not shipped here, so rwku writes its own short lists
(cycled to the corpus size). ``--corpus official`` trains on the release's precomputed corpora instead.
"""

from __future__ import annotations

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
