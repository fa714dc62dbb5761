"""In-context unlearning (ICU): no training; every evaluation prompt (MIA texts included) starts with the
official instruction to act as if the target were unknown."""

from __future__ import annotations

from typing import ClassVar

from rwku.evaluation.protocol import ICU_PREAMBLE
from rwku.methods.base import Method, Session, Unlearned


class InContextUnlearning(Method):
    name: ClassVar[str] = "icu"
    description: ClassVar[str] = "in-context unlearning: the official preamble before every prompt"
    paper: ClassVar[str] = "Pawelczyk et al. 2024 (ICU)"
    trains: ClassVar[bool] = False

    def unlearn(self, session: Session) -> Unlearned:
        return Unlearned(model=session.lm.model, preamble=ICU_PREAMBLE, log={"preamble": ICU_PREAMBLE})
