"""Unlearning methods, one module each, found by name in :data:`METHODS`."""

from rwku.methods.base import Method, Session, Unlearned
from rwku.methods.dpo import DirectPreference
from rwku.methods.ga import GradientAscent, GradientAscentPassage
from rwku.methods.graddiff import GradientDifference
from rwku.methods.icu import InContextUnlearning
from rwku.methods.idkdpo import IdkPreference
from rwku.methods.idknll import IdkNll
from rwku.methods.npo import NegativePreference
from rwku.methods.npo_gd import NpoGradDiff
from rwku.methods.npo_kl import NpoKl
from rwku.methods.repe import RepresentationEngineering
from rwku.methods.rmu import RepresentationMisdirection
from rwku.methods.rt import RejectionTuning
from rwku.methods.simnpo import SimNegativePreference
from rwku.methods.undial import SelfDistillation
from rwku.methods.wga import WeightedGradientAscent

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (InContextUnlearning, RepresentationEngineering, GradientAscent, GradientAscentPassage,
                DirectPreference, NegativePreference, RejectionTuning)
}
#: methods beyond the paper, after the paper's seven, in the order the report shows them
METHODS.update({cls.name: cls for cls in (GradientDifference, NpoGradDiff, NpoKl, SimNegativePreference, WeightedGradientAscent,
                                          SelfDistillation, RepresentationMisdirection, IdkNll, IdkPreference)})

__all__ = ["METHODS", "Method", "Session", "Unlearned"]
