"""Unlearning methods, one module each, found by name in :data:`METHODS`."""

from rwku.methods.base import Method, Session, Unlearned
from rwku.methods.dpo import DirectPreference
from rwku.methods.ga import GradientAscent, GradientAscentPassage
from rwku.methods.icu import InContextUnlearning
from rwku.methods.npo import NegativePreference
from rwku.methods.repe import RepresentationEngineering
from rwku.methods.rt import RejectionTuning

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (InContextUnlearning, RepresentationEngineering, GradientAscent, GradientAscentPassage,
                DirectPreference, NegativePreference, RejectionTuning)
}

__all__ = ["METHODS", "Method", "Session", "Unlearned"]
