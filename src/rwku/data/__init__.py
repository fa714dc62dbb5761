"""RWKU data: typed records (:mod:`rwku.data.schema`), sources and the loader."""

from rwku.data.loader import ALL_SETS, RwkuData, parse_sets
from rwku.data.schema import ATTACK_TYPES, Probe, Target, TargetData

__all__ = ["ALL_SETS", "ATTACK_TYPES", "Probe", "RwkuData", "Target", "TargetData", "parse_sets"]
