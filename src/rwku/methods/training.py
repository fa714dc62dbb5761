"""The one training loop every trained method shares, and how the trainable parameters are chosen.

A method supplies examples (token ids plus which tokens count), a collate function, and a loss
``loss_fn(model, batch) -> scalar tensor`` (a method binds its reference and parameters into it); the loop does the rest: seeded shuffling, micro-batches with gradient accumulation, AdamW, a cosine schedule with
warm-up, gradient clipping, and a per-step log. Padding is masked by the attention mask, never by the pad id:
SmolLM2 pads with its end-of-turn token, which must stay in the loss where it is real.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from transformers import get_cosine_schedule_with_warmup

from rwku.errors import RwkuError
from rwku.methods.config import ModeConfig, TrainConfig


@dataclass
class Example:
    """One training sequence: ``ids`` and a 0/1 ``loss_mask`` saying which tokens are scored."""

    ids: list[int]
    loss_mask: list[int]


@dataclass
class Batch:
    """Right-padded tensors: input ids, attention mask, and the loss mask aligned with the ids."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor


def collate(examples: Sequence[Example], pad_id: int, device: Any) -> Batch:
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    loss = torch.zeros((len(examples), width), dtype=torch.long)
    for i, example in enumerate(examples):
        n = len(example.ids)
        ids[i, :n] = torch.tensor(example.ids)
        attention[i, :n] = 1
        loss[i, :n] = torch.tensor(example.loss_mask)
    return Batch(ids.to(device), attention.to(device), loss.to(device))


def counted_tokens(batch: Batch) -> torch.Tensor:
    """1.0 where token t ≥ 1 counts (scored and not padding), aligned with the predictions of positions < t: [B, T−1]."""
    return (batch.loss_mask[:, 1:] * batch.attention_mask[:, 1:]).float()


def token_logprobs(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(token t | tokens < t) for t ≥ 1, and the mask of tokens that count: both [B, T−1]."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    targets = batch.input_ids[:, 1:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    return logprobs, counted_tokens(batch)


def sequence_logprob(model: Any, batch: Batch) -> torch.Tensor:
    """Summed log-probability of each sequence's counted tokens: [B]."""
    logprobs, mask = token_logprobs(model, batch)
    return (logprobs * mask).sum(-1)


def mean_token_nll(model: Any, batch: Batch) -> torch.Tensor:
    """Mean NLL over all counted tokens of the batch (what a causal-LM ``labels`` loss computes)."""
    logprobs, mask = token_logprobs(model, batch)
    return -(logprobs * mask).sum() / mask.sum().clamp(min=1)


# ------------------------------------------------------------------ choosing what trains


def layer_index(name: str) -> int | None:
    match = re.search(r"\.layers\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def num_layers(model: Any) -> int:
    return int(getattr(model.config, "num_hidden_layers", 0) or 0)


def prepare_trainable(model: Any, mode: ModeConfig) -> Any:
    """Freeze/unfreeze for the mode; LoRA wraps the model with a peft adapter (returned).

    With ``train_layers=(a, b)`` only decoder layers a … b−1 train (their adapter weights under LoRA); everything
    else, embeddings and head included, stays frozen, as in the official partial-layer scripts.
    """
    mode.check_fits(num_layers(model))
    if mode.mode == "lora":
        from peft import LoraConfig, get_peft_model

        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in mode.lora_targets if t not in present]
        if missing:
            raise RwkuError(f"--lora-targets: the model has no module named {', '.join(missing)}")
        layers = list(range(*mode.train_layers)) if mode.train_layers else None
        config = LoraConfig(r=mode.lora_r, lora_alpha=mode.lora_alpha, lora_dropout=mode.lora_dropout,
                            target_modules=list(mode.lora_targets), layers_to_transform=layers, task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    else:
        for name, param in model.named_parameters():
            index = layer_index(name)
            param.requires_grad = mode.train_layers is None or (index is not None and mode.train_layers[0] <= index < mode.train_layers[1])
    if not any(p.requires_grad for p in model.parameters()):
        raise RwkuError("no parameter is left to train; check --mode, --train-layers and --lora-targets")
    return model


# ------------------------------------------------------------------ the loop

LossFn = Callable[[Any, Any], torch.Tensor]


@dataclass
class TrainLog:
    """Per optimiser step: loss, learning rate, gradient norm."""

    steps: list[dict[str, float]] = field(default_factory=list)


def train(
    model: Any,
    examples: Sequence[Any],
    loss_fn: LossFn,
    config: TrainConfig,
    *,
    collate_fn: Callable[[Sequence[Any]], Any],
    on_step: Callable[[dict[str, float]], None] | None = None,
    on_epoch_end: Callable[[int, Any], None] | None = None,
) -> TrainLog:
    """Optimise ``loss_fn`` over ``examples`` for ``config.epochs`` epochs; returns the step log.

    ``examples`` are whatever ``collate_fn`` turns into a batch; ``loss_fn(model, batch)`` returns a scalar.
    Shuffling uses its own generator seeded with ``config.seed``, so a run is reproducible.
    ``on_epoch_end(epoch, model)`` is called (model in eval mode) after every epoch but the last, whose model
    is the result anyway: the runner evaluates there to trace efficacy against locality over training.
    """
    if not examples:
        raise RwkuError("the training corpus is empty; check the corpus settings")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_step = config.batch_size * config.grad_accum
    steps_per_epoch = math.ceil(len(examples) / per_step)
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, total_steps)
    generator = torch.Generator().manual_seed(config.seed)
    log = TrainLog()
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        for step in range(steps_per_epoch):
            chunk = order[step * per_step:(step + 1) * per_step]
            micro = [chunk[i:i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]
            total = 0.0
            for indices in micro:
                loss = loss_fn(model, collate_fn([examples[i] for i in indices])) * (len(indices) / len(chunk))
                loss.backward()
                total += float(loss.detach())
            norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            entry = {"epoch": epoch, "step": len(log.steps) + 1, "loss": total, "lr": lr, "grad_norm": float(norm)}
            log.steps.append(entry)
            if on_step is not None:
                on_step(entry)
        if on_epoch_end is not None and epoch + 1 < config.epochs:
            model.eval()
            on_epoch_end(epoch + 1, model)
            model.train()
    model.eval()
    return log
