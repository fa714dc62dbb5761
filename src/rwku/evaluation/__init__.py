"""The RWKU evaluation: forget/neighbour probes, membership inference and utility, per the official protocol."""

from rwku.evaluation.context import EvalContext
from rwku.evaluation.engine import EvalResult, evaluate_target, limit_data
from rwku.evaluation.protocol import FIXES, ICU_PREAMBLE, Protocol

__all__ = ["EvalContext", "EvalResult", "FIXES", "ICU_PREAMBLE", "Protocol", "evaluate_target", "limit_data"]
