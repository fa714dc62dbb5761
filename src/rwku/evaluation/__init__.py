"""The RWKU evaluation: forget/neighbour probes, membership inference and utility, per the official protocol.

The sets are in a registry (:mod:`rwku.evaluation.sets`); :func:`evaluate_target` runs any selection of them.
"""

from rwku.evaluation.context import EvalContext
from rwku.evaluation.engine import EvalResult, evaluate_target
from rwku.evaluation.protocol import FIXES, ICU_PREAMBLE, Protocol

__all__ = ["EvalContext", "EvalResult", "FIXES", "ICU_PREAMBLE", "Protocol", "evaluate_target"]
