"""What a method is: given the original model, the targets and a corpus, return a model to evaluate.

Methods are small classes in a registry (:data:`rwku.methods.METHODS`), each with its own typed parameters
(``params_type``) and presets per (preset, mode, setting); trained ones share
:func:`rwku.methods.training.train` and differ only in their examples and loss.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import torch

from rwku.corpus.build import Corpus
from rwku.data.schema import Target
from rwku.methods.config import ModeConfig, NoParams, Preset, TrainConfig
from rwku.methods.training import Batch, Example, collate, prepare_trainable, sequence_logprob, train
from rwku.models.loading import LoadedModel
from rwku.models.prompting import PromptFormat


@dataclass
class Session:
    """Everything a method may use for one unlearning run (one target, or pooled targets)."""

    lm: LoadedModel
    targets: list[Target]
    corpus: Corpus
    params: Any  # the method's own parameters (an instance of its ``params_type``)
    mode: ModeConfig
    prompts: PromptFormat  # the run's prompt format (chat or plain), for every prompt a method renders
    progress: Callable[[str, int], Any]
    train: TrainConfig | None = None  # the shared loop's settings (trained methods)
    on_epoch: Callable[[int, Any], None] | None = None  # called with (epoch, model) after each epoch but the last


@dataclass
class Unlearned:
    """The result of a method: the model to evaluate, an optional prompt preamble, hooks to remove afterwards."""

    model: Any
    preamble: str | None = None
    hooks: list[Any] = field(default_factory=list)
    log: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()


class Method:
    """Base class: ``name`` for the registry, ``corpus_kinds`` it needs generated, its parameters and presets,
    and ``unlearn``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: where the method comes from, a short citation (the report's method legend)
    paper: ClassVar[str] = "Jin et al. 2024, RWKU"
    corpus_kinds: ClassVar[tuple[str, ...]] = ()
    trains: ClassVar[bool] = True
    params_type: ClassVar[type] = NoParams
    #: (preset, mode, setting) -> values; see :mod:`rwku.methods.config` for how they are resolved
    presets: ClassVar[Mapping[tuple[str, str, str], Preset]] = {}

    def unlearn(self, session: Session) -> Unlearned:
        raise NotImplementedError

    @classmethod
    def trains_on(cls) -> tuple[str, ...]:
        """The corpus parts the method trains on (each unit summary records them): its generated kinds by default."""
        return cls.corpus_kinds


class TrainedMethod(Method):
    """A method that fine-tunes: subclasses give ``examples`` and ``loss``; the shared loop does the rest."""

    needs_reference: ClassVar[bool] = False

    def examples(self, session: Session) -> Sequence[Any]:
        raise NotImplementedError

    def loss(self, model: Any, batch: Any, session: Session, reference: "Reference | None") -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, base: Any, session: Session) -> Any:
        """The model to train, with what trains in the run's mode (:func:`prepare_trainable`)."""
        return prepare_trainable(base, session.mode)

    def collate(self, session: Session) -> Callable[[Sequence[Any]], Any]:
        pad_id, device = int(session.lm.tokenizer.pad_token_id), session.lm.device
        return lambda examples: collate(examples, pad_id, device)

    def unlearn(self, session: Session) -> Unlearned:
        base = session.lm.model
        frozen_copy = copy.deepcopy(base).eval() if self.needs_reference and session.mode.mode == "full" else None
        model = self.prepare(base, session)
        reference = Reference(model, frozen_copy) if self.needs_reference else None
        examples = self.examples(session)
        config = session.train
        steps = max(1, -(-len(examples) // (config.batch_size * config.grad_accum))) * config.epochs
        with session.progress(f"train {self.name}", steps) as advance:
            log = train(model, examples, lambda m, b: self.loss(m, b, session, reference), config,
                        collate_fn=self.collate(session), on_step=lambda entry: advance(1),
                        on_epoch_end=session.on_epoch)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return Unlearned(model=model, log={"steps": log.steps, "examples": len(examples), "trainable_parameters": trainable})


class Reference:
    """The original model's log-probabilities: a frozen copy (full/partial tuning) or the adapter switched off (LoRA)."""

    def __init__(self, model: Any, frozen_copy: Any | None):
        self.model = model
        self.frozen_copy = frozen_copy

    @contextmanager
    def original(self) -> Iterator[Any]:
        """The original model for the duration of the block (logits, hidden states: whatever a loss compares)."""
        if self.frozen_copy is not None:
            yield self.frozen_copy
        else:
            with self.model.disable_adapter():
                yield self.model

    @torch.no_grad()
    def sequence_logprob(self, batch: Batch) -> torch.Tensor:
        with self.original() as original:
            return sequence_logprob(original, batch)


# ------------------------------------------------------------------ turning text into examples


def text_example(tokenizer: Any, text: str, max_length: int) -> Example:
    """Raw text + EOS (default special tokens, e.g. BOS), truncated to ``max_length``; every token counts."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])[: max_length - 1] + [tokenizer.eos_token_id]
    return Example(ids=ids, loss_mask=[1] * len(ids))


def chat_example(prompts: PromptFormat, prompt: str, response: str, max_length: int) -> Example:
    """A user turn (in the run's prompt format) and the assistant's response + EOS; only the response counts."""
    tokenizer = prompts.tokenizer
    prompt_ids = list(tokenizer(prompts.render(prompt), add_special_tokens=True)["input_ids"])
    response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    ids = (prompt_ids + response_ids)[:max_length]
    mask = ([0] * len(prompt_ids) + [1] * len(response_ids))[:max_length]
    return Example(ids=ids, loss_mask=mask)
