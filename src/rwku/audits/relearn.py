"""Relearning audit: does fine-tuning on some of the forgotten facts bring back the others?

Sources: Hu et al., "Jogging the Memory of Unlearned LLMs Through Targeted Relearning Attacks" (2024); Deeb &
Roger, "Do Unlearning Methods Remove Information from Language Model Weights?" (2024): fine-tuning on part of the
forgotten facts restored 88% of the rest, which a real removal would not allow.

A fact is a forget probe's normalised answer (lower case, punctuation and extra spaces removed), so probes with the
same answer are one fact. The target's facts are shuffled (``relearn_seed``) and split in two halves, so no fact
is on both sides. A copy of the unlearned model (LoRA merged first; ICU's preamble and RepE's hooks kept) is
fine-tuned for ``relearn_steps`` steps (one batch of every statement per step; ``relearn_mode`` lora or full, at
``relearn_lr``) on the first half written as plain statements: a fill-in-the-blank probe with its blank filled, a
question followed by its answer. Then the probes of the *other* half are answered.

Controls, so that relearning which merely teaches is visible: the same relearning of the unlearned model on as many
statements of another target's facts, and the same relearning of the original model on the first half.
"""

from __future__ import annotations

import random
import re
from typing import Any, Sequence

from rwku.audits.base import Audit, AuditResult, AuditSubject, mean_score, plain_copy, probe_rows, scores
from rwku.data.schema import Probe
from rwku.methods.base import text_example
from rwku.methods.config import ModeConfig, TrainConfig
from rwku.methods.training import collate, mean_token_nll, prepare_trainable, train

STATEMENT_LEVELS = ("1", "2")  # fill-in-the-blank and questions make plain statements; adversarial prompts do not
MAX_LENGTH = 128


def normalise(answer: str) -> str:
    """``"Cambridge, England."`` -> ``"cambridge england"``: the fact a probe asks for."""
    return " ".join(re.sub(r"[^\w\s]", " ", answer.lower()).split())


def split_facts(probes: Sequence[Probe], seed: int) -> tuple[list[str], list[str]]:
    """The probes' facts in two disjoint halves (the first the larger when the count is odd), shuffled by ``seed``."""
    facts = sorted({normalise(p.answer) for p in probes})
    random.Random(seed).shuffle(facts)
    half = (len(facts) + 1) // 2
    return facts[:half], facts[half:]


def statement(probe: Probe) -> str:
    """A probe as a plain statement: its blank filled with the answer, or its question followed by the answer."""
    if re.search(r"_{1,}", probe.query):
        return re.sub(r"_{1,}", probe.answer, probe.query, count=1)
    return f"{probe.query.strip()} {probe.answer.strip()}."


def statements(probes: Sequence[Probe], facts: Sequence[str]) -> list[str]:
    """Distinct statements of the facts, from their fill-in-the-blank and question probes (else any probe of theirs)."""
    wanted = set(facts)
    chosen = [p for p in probes if normalise(p.answer) in wanted]
    plain = {normalise(p.answer) for p in chosen if p.level in STATEMENT_LEVELS}
    kept = [p for p in chosen if p.level in STATEMENT_LEVELS or normalise(p.answer) not in plain]
    return list(dict.fromkeys(statement(p) for p in kept))


def relearned(subject: AuditSubject, model: Any, texts: Sequence[str]) -> Any:
    """A copy of ``model`` fine-tuned on ``texts`` for ``relearn_steps`` steps (one batch of all texts per step)."""
    import torch

    settings, tokenizer = subject.settings, subject.lm.tokenizer
    copy = prepare_trainable(plain_copy(model), ModeConfig(mode=settings.relearn_mode))
    config = TrainConfig(lr=settings.relearn_lr, batch_size=len(texts), epochs=settings.relearn_steps, warmup_steps=0,
                         max_length=MAX_LENGTH, seed=settings.relearn_seed)
    examples = [text_example(tokenizer, text, MAX_LENGTH) for text in texts]
    device, pad_id = next(copy.parameters()).device, int(tokenizer.pad_token_id)
    torch.manual_seed(settings.relearn_seed)
    with torch.enable_grad():
        train(copy, examples, mean_token_nll, config, collate_fn=lambda batch: collate(batch, pad_id, device))
    return copy


def run_relearn(subject: AuditSubject) -> AuditResult:
    settings = subject.settings
    forget = subject.forget
    taught, held_out = split_facts(forget, settings.relearn_seed)
    if not held_out:
        return AuditResult({**scores(None, None, None, None, None), "applicable": False,
                            "note": f"{len(taught)} fact(s): too few to teach one half and test the other"})
    tested = [i for i, p in enumerate(forget) if normalise(p.answer) in set(held_out)]
    tested_probes = [forget[i] for i in tested]
    texts = statements(forget, taught)
    other = subject.control_probes()
    other_texts = statements(other, sorted({normalise(p.answer) for p in other}))[:len(texts)]

    attacked = relearned(subject, subject.model, texts)
    forget_items = subject.evaluate(attacked, tested_probes, "forget")
    neighbor_items = subject.evaluate(attacked, subject.neighbor, "neighbor")
    del attacked
    controls: dict[str, Any] = {}
    if other_texts:
        control = relearned(subject, subject.model, other_texts)
        controls["other_target"] = mean_score(subject.evaluate(control, tested_probes, "forget"))
        del control
    original_relearned = relearned(subject, subject.original(), texts)
    controls["original_relearned"] = mean_score(subject.evaluate(original_relearned, tested_probes, "forget", as_original=True))
    del original_relearned

    unlearned, original = subject.baseline("unlearned", "forget"), subject.baseline("original", "forget")
    summary = scores(mean_score(forget_items), mean_score(unlearned, tested), mean_score(original, tested),
                     mean_score(neighbor_items), mean_score(subject.baseline("unlearned", "neighbor")))
    summary.update({"n_probes": len(tested), "facts": {"taught": len(taught), "held_out": len(held_out)},
                    "statements": len(texts), "control_statements": len(other_texts), "steps": settings.relearn_steps,
                    "mode": settings.relearn_mode, "lr": settings.relearn_lr, "controls": controls})
    if not other_texts:
        summary["note"] = "no other target in the data: the other-target control did not run"
    rows = probe_rows(forget_items, [unlearned[i] for i in tested], [original[i] for i in tested],
                      fact=[normalise(p.answer) for p in tested_probes])
    return AuditResult(summary, {"forget": rows, "statements": texts, "control_statements": other_texts, "held_out": held_out})


RELEARN = Audit("relearn", "fine-tune on half of the forgotten facts, test the other half",
                ("relearn_steps", "relearn_lr", "relearn_mode", "relearn_seed"), run_relearn)
