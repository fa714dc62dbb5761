"""The one training loop every trained method shares, and how the trainable parameters are chosen.

A method supplies examples (token ids plus which tokens count), a collate function, and a loss
``loss_fn(model, batch) -> scalar tensor`` (a method binds its reference and parameters into it); the loop does
the rest: seeded shuffling, micro-batches with gradient accumulation, AdamW, a cosine schedule with warm-up,
gradient clipping, and a per-step log. Padding is masked by the attention mask, never by the pad id: SmolLM2 pads
with its end-of-turn token, which must stay in the loss where it is real.

Precision (:class:`Runtime`): the paper's full-tuning rates (GA 6e-8, NPO 2e-6) move a weight near 1e-2 by far less
than half a bfloat16 step there (about 3e-5), so AdamW on bfloat16 weights rounds every update away. On
half-precision weights the loop therefore trains float32 master weights under bfloat16 autocast, as the official
scripts' Trainer does: full and partial tuning upcast the model (so it is evaluated, between epochs and after, from
the float32 weights the updates landed in); LoRA's adapter is float32 already (peft keeps it so) and the frozen
base stays as loaded.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ContextManager, Sequence

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
        with warnings.catch_warnings():  # peft reads transformers' deprecated name; nothing for a user to act on
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            model = get_peft_model(model, config)
    else:
        for name, param in model.named_parameters():
            index = layer_index(name)
            param.requires_grad = mode.train_layers is None or (index is not None and mode.train_layers[0] <= index < mode.train_layers[1])
    if not any(p.requires_grad for p in model.parameters()):
        raise RwkuError("no parameter is left to train; check --mode, --train-layers and --lora-targets")
    return model


# ------------------------------------------------------------------ precision, memory and the optimiser


@dataclass(frozen=True)
class Runtime:
    """How the loop runs on this model and device, resolved from the ``auto`` settings (recorded in the train log)."""

    precision: str  # float32 | bf16-mixed | pure
    gradient_checkpointing: bool
    optimizer: str  # adamw | adamw8bit

    def as_log(self) -> dict[str, Any]:
        return asdict(self)


def resolve_runtime(config: TrainConfig, model: Any, full_tuning: bool) -> Runtime:
    """``auto`` made concrete: mixed precision on half-precision weights, checkpointing for full tuning on a GPU."""
    first = next(model.parameters())
    precision = config.precision
    if precision == "auto":
        precision = "float32" if first.dtype == torch.float32 else "bf16-mixed"
    checkpointing = config.gradient_checkpointing == "on" or (
        config.gradient_checkpointing == "auto" and full_tuning and first.device.type == "cuda")
    return Runtime(precision=precision, gradient_checkpointing=checkpointing, optimizer=config.optimizer)


def apply_precision(model: Any, precision: str) -> Callable[[], ContextManager[Any]]:
    """Put the weights in the precision's dtype and return the context every forward and backward pass runs in.

    ``float32`` upcasts the whole model; ``bf16-mixed`` upcasts the model too (its float32 weights are the master
    copy the optimiser updates) except under LoRA, whose adapter is float32 already and whose frozen base stays as
    loaded; ``pure`` leaves every weight in its dtype (updates below half a step there are lost)."""
    if precision == "pure":
        return contextlib.nullcontext
    if precision == "float32" or not hasattr(model, "peft_config"):
        model.float()
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    if precision == "float32":
        return contextlib.nullcontext
    device_type = next(model.parameters()).device.type
    return lambda: torch.autocast(device_type, dtype=torch.bfloat16)


def make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or bitsandbytes' 8-bit AdamW where that package and a GPU are present."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    try:
        import bitsandbytes
    except ImportError:
        raise RwkuError("optimizer=adamw8bit needs the bitsandbytes package (pip install bitsandbytes) and a CUDA GPU; "
                        "use optimizer=adamw") from None
    if params[0].device.type != "cuda":
        raise RwkuError("optimizer=adamw8bit runs on a CUDA GPU only; this model is on the CPU: use optimizer=adamw")
    return bitsandbytes.optim.AdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)


@contextlib.contextmanager
def checkpointing(model: Any, enabled: bool):
    """Gradient checkpointing for the duration of training (evaluation between epochs runs without it)."""
    if enabled:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        if enabled:
            model.gradient_checkpointing_disable()


# ------------------------------------------------------------------ the loop

LossFn = Callable[[Any, Any], torch.Tensor]


@dataclass
class TrainLog:
    """Per optimiser step: loss, learning rate, gradient norm; and how the loop ran (precision, checkpointing, optimiser)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    runtime: dict[str, Any] = field(default_factory=dict)


def train(
    model: Any,
    examples: Sequence[Any],
    loss_fn: LossFn,
    config: TrainConfig,
    *,
    collate_fn: Callable[[Sequence[Any]], Any],
    on_step: Callable[[dict[str, float]], None] | None = None,
    on_epoch_end: Callable[[int, Any], None] | None = None,
    runtime: Runtime | None = None,
) -> TrainLog:
    """Optimise ``loss_fn`` over ``examples`` for ``config.epochs`` epochs; returns the step log.

    ``examples`` are whatever ``collate_fn`` turns into a batch; ``loss_fn(model, batch)`` returns a scalar.
    Shuffling uses its own generator seeded with ``config.seed``, so a run is reproducible.
    ``on_epoch_end(epoch, model)`` is called (model in eval mode, checkpointing off) after every epoch but the last,
    whose model is the result anyway: the runner evaluates there to trace efficacy against locality over training.
    ``runtime`` (default: resolved from ``config`` as for full tuning) sets precision, checkpointing and the
    optimiser; the log records it.
    """
    if not examples:
        raise RwkuError("the training corpus is empty; check the corpus settings")
    runtime = runtime or resolve_runtime(config, model, full_tuning=True)
    autocast = apply_precision(model, runtime.precision)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    per_step = config.batch_size * config.grad_accum
    steps_per_epoch = math.ceil(len(examples) / per_step)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, steps_per_epoch * config.epochs)
    generator = torch.Generator().manual_seed(config.seed)
    log = TrainLog(runtime=runtime.as_log())
    for epoch in range(config.epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        model.train()
        with checkpointing(model, runtime.gradient_checkpointing):
            for step in range(steps_per_epoch):
                chunk = order[step * per_step:(step + 1) * per_step]
                micro = [chunk[i:i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]
                total = 0.0
                for indices in micro:
                    with autocast():
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
        model.eval()
        if on_epoch_end is not None and epoch + 1 < config.epochs:
            on_epoch_end(epoch + 1, model)
    return log
