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
from rwku.methods.training import Batch, Example, apply_precision, collate, prepare_trainable, resolve_runtime, sequence_logprob, train
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
    #: where the method comes from, a short citation the report's method legend shows ("Fan et al. 2024 (SimNPO)")
    paper: ClassVar[str] = ""
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

    #: the loss reads the original's sequence log-probabilities (precomputed: :class:`Reference`)
    needs_reference: ClassVar[bool] = False
    #: the loss runs the original model while training (a frozen copy under full tuning; the memory estimate counts it)
    needs_original: ClassVar[bool] = False
    #: sequences one example puts through the model (DPO: chosen and rejected); the memory estimate reads it
    rows_per_example: ClassVar[int] = 1

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

    def reference_examples(self, examples: Sequence[Any]) -> list[Example]:
        """The sequences whose reference log-probabilities the loss asks for (DPO: chosen and rejected)."""
        return list(examples)

    def unlearn(self, session: Session) -> Unlearned:
        config = session.train
        base = session.lm.model
        frozen_copy = copy.deepcopy(base).eval() if self.needs_original and session.mode.mode == "full" else None
        model = self.prepare(base, session)
        runtime = resolve_runtime(config, model, full_tuning=session.mode.mode == "full")
        apply_precision(model, runtime.precision)  # references are taken in the precision the model is evaluated in
        examples = self.examples(session)
        reference = None
        if self.needs_reference or self.needs_original:
            values = None
            if self.needs_reference:
                values = Reference.precompute(model, self.reference_examples(examples), int(session.lm.tokenizer.pad_token_id),
                                              config.batch_size)
            reference = Reference(values, model if self.needs_original else None, frozen_copy)
        steps = max(1, -(-len(examples) // (config.batch_size * config.grad_accum))) * config.epochs
        with session.progress(f"train {self.name}", steps) as advance:
            log = train(model, examples, lambda m, b: self.loss(m, b, session, reference), config,
                        collate_fn=self.collate(session), on_step=lambda entry: advance(1),
                        on_epoch_end=session.on_epoch, runtime=runtime)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return Unlearned(model=model, log={"steps": log.steps, "examples": len(examples), "trainable_parameters": trainable,
                                           "runtime": log.runtime})


class Reference:
    """The original model, as a loss needs it.

    ``values``: the original's summed log-probability of every training sequence (NPO, DPO), computed once before
    training and kept as numbers only, so full tuning needs no second copy of the model (the paper's NPO and DPO on
    an 8B model would otherwise hold two). Before the first step the model *is* the original (a new LoRA adapter
    adds zero), so they are taken from it, without gradients, in the precision it is evaluated in; a sequence is
    looked up by its tokens and loss mask, so any batch composition finds its rows.

    ``original()``: the original model itself, for a method that reads its outputs while training (UNDIAL's
    logits): a frozen copy under full tuning, the trained model with its adapter switched off under LoRA.
    """

    def __init__(self, values: dict[tuple[tuple[int, ...], tuple[int, ...]], float] | None = None,
                 model: Any | None = None, frozen_copy: Any | None = None):
        self.values = values
        self.model = model
        self.frozen_copy = frozen_copy

    @staticmethod
    @torch.no_grad()
    def precompute(model: Any, examples: Sequence[Example], pad_id: int, batch_size: int) -> dict[tuple[tuple[int, ...], tuple[int, ...]], float]:
        """Each example's summed log-probability under ``model`` (the original, before the first step)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        values = {}
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            logprobs = sequence_logprob(model, collate(chunk, pad_id, device))
            values.update({(tuple(e.ids), tuple(e.loss_mask)): float(v) for e, v in zip(chunk, logprobs.tolist())})
        model.train(was_training)
        return values

    def sequence_logprob(self, batch: Batch) -> torch.Tensor:
        """The original's log-probability of each row of ``batch``: [B]."""
        rows = []
        for ids, attention, mask in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(), batch.loss_mask.tolist()):
            n = sum(attention)
            rows.append(self.values[(tuple(ids[:n]), tuple(mask[:n]))])
        return torch.tensor(rows, dtype=torch.float32, device=batch.input_ids.device)

    @contextmanager
    def original(self) -> Iterator[Any]:
        """The original model for the duration of the block, without gradients."""
        with torch.no_grad():
            if self.frozen_copy is not None:
                yield self.frozen_copy
            else:
                with self.model.disable_adapter():
                    yield self.model

    def logits(self, batch: Batch) -> torch.Tensor:
        """The original's next-token logits (fp32) at every position: [B, T, vocab]."""
        with self.original() as model:
            return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()


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
