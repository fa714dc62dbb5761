"""Unlearning methods, one module each, found by name in :data:`METHODS`."""

from rwku.methods.base import Method, Session, Unlearned
from rwku.methods.dpo import DirectPreference
from rwku.methods.ga import GradientAscent, GradientAscentPassage
from rwku.methods.graddiff import GradientDifference
from rwku.methods.icu import InContextUnlearning
from rwku.methods.idknll import IdkNll
from rwku.methods.npo import NegativePreference
from rwku.methods.npo_gd import NpoGradDiff
from rwku.methods.npo_kl import NpoKl
from rwku.methods.repe import RepresentationEngineering
from rwku.methods.rmu import RepresentationMisdirection
from rwku.methods.rt import RejectionTuning

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (InContextUnlearning, RepresentationEngineering, GradientAscent, GradientAscentPassage,
                DirectPreference, NegativePreference, RejectionTuning)
}
#: methods beyond the paper (registry order = report order: the paper's seven first)
METHODS.update({cls.name: cls for cls in (GradientDifference, NpoGradDiff, NpoKl, IdkNll, RepresentationMisdirection)})

__all__ = ["METHODS", "Method", "Session", "Unlearned"]
