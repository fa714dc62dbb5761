"""RWKU data: typed records and parts (:mod:`rwku.data.schema`), sources and the loader."""

from rwku.data.loader import RwkuData
from rwku.data.schema import ATTACK_TYPES, PASSAGE, Part, Probe, Target, TargetData

__all__ = ["ATTACK_TYPES", "PASSAGE", "Part", "Probe", "RwkuData", "Target", "TargetData"]
