"""What a unit needs from a GPU, estimated before anything is loaded, so ``--dry-run`` can say how many GPUs a
unit should ask for (``--gpus-per-unit``) and docs/gpus-and-clusters.md can say which units fit an 80 GB or a 141 GB card.

A unit's peak is the larger of its training peak and its evaluation peak. Training counts, in bytes:

- weights: as loaded (``w`` bytes each), or upcast to float32 where the loop keeps float32 master weights (full and
  partial tuning under ``float32`` or ``bf16-mixed``; LoRA keeps its base as loaded and its adapter in float32);
- gradients and optimiser state of the trainable parameters: float32 gradients, AdamW's two float32 moments
  (8 bytes; 2 with ``adamw8bit``); ``pure`` keeps all three in the weights' dtype;
- the bfloat16 copies autocast makes of the trainable weights for the forward and backward passes;
- a frozen copy of the original model only for a method that reads the reference model's logits during training
  (``needs_original``: UNDIAL); NPO and DPO keep precomputed numbers instead (:class:`rwku.methods.base.Reference`);
- activations kept for the backward pass: per layer and token about ``18·hidden + 5·intermediate`` values (measured
  on small Llama-shaped models with autograd's saved-tensor hooks; tested within a factor of 1.5), or with gradient checkpointing one
  hidden state per layer plus one layer's worth; and the logits with their float32 log-softmax (3 values per token
  and vocabulary entry), for ``batch × rows per example`` sequences of ``max_length`` tokens (an upper bound: most
  texts are shorter).

Audits (``--audit``) hold the original model and an attacked copy beside the unlearned one (full relearning
trains that copy: six copies' worth). Evaluation counts the weights in the evaluation dtype, the KV cache of a batch of ``EVAL_TOKENS``-token sequences and
the float32 logits of a scoring batch. Allocator fragmentation and CUDA's context (about 0.5 GiB) come on top.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from rwku.execution.plan import UnitTask

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: Longest sequence an evaluation batch holds (BBH's three-shot chain-of-thought prompt and its answer)
EVAL_TOKENS = 2048
#: Longest sequence a scoring batch holds (MIA texts, MMLU prompts)
SCORE_TOKENS = 512
#: Per layer and token, values autograd keeps for the backward pass: ACTIVATION_HIDDEN·hidden + ACTIVATION_INNER·inner
ACTIVATION_HIDDEN, ACTIVATION_INNER = 18, 5

LLAMA3_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256, "intermediate_size": 14336,
             "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False}
#: SmolLM2-135M-Instruct, the embedded default (and the planted demo model: planting changes weights, not shapes)
DEFAULT_MODEL_CONFIG = {"hidden_size": 576, "num_hidden_layers": 30, "vocab_size": 49152, "intermediate_size": 1536,
                        "num_attention_heads": 9, "num_key_value_heads": 3, "tie_word_embeddings": True}
DEFAULT_MODEL_PARAMETERS = 134_515_008  # what that config gives (tested), and what the converted model holds
#: Models the paper and its follow-ups run, for an estimate without reaching the hub
KNOWN_CONFIGS = {
    "meta-llama/Meta-Llama-3-8B-Instruct": LLAMA3_8B,
    "meta-llama/Meta-Llama-3.1-8B-Instruct": LLAMA3_8B,
    "meta-llama/Llama-3.1-8B-Instruct": LLAMA3_8B,
    "microsoft/Phi-3-mini-4k-instruct": {"hidden_size": 3072, "num_hidden_layers": 32, "vocab_size": 32064,
                                         "intermediate_size": 8192, "num_attention_heads": 32,
                                         "num_key_value_heads": 32, "tie_word_embeddings": False},
}


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a Llama-style decoder."""

    hidden: int
    layers: int
    vocab: int
    inner: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Shape | None":
        try:
            hidden, layers, vocab = int(config["hidden_size"]), int(config["num_hidden_layers"]), int(config["vocab_size"])
            heads = int(config.get("num_attention_heads") or 1)
            return cls(hidden=hidden, layers=layers, vocab=vocab, inner=int(config.get("intermediate_size") or 4 * hidden),
                       heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
                       head_dim=int(config.get("head_dim") or hidden // heads), tied=bool(config.get("tie_word_embeddings")))
        except (KeyError, TypeError, ValueError):
            return None

    def module_sizes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear module of a decoder layer."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, self.inner), "up_proj": (h, self.inner), "down_proj": (self.inner, h)}

    @property
    def per_layer(self) -> int:
        return sum(a * b for a, b in self.module_sizes().values()) + 2 * self.hidden

    @property
    def parameters(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.layers * self.per_layer + self.hidden


def parameters_from_config(config: Mapping[str, Any]) -> int | None:
    """Parameters of a Llama-style decoder from its config (embeddings, attention with grouped KV heads, MLP)."""
    shape = Shape.from_config(config)
    return None if shape is None else shape.parameters


@lru_cache(maxsize=16)
def model_shape(spec: str) -> Shape | None:
    """The model's shape from its local config (the hub is only asked where it is reachable)."""
    from rwku.models.loading import DEFAULT_MODEL, PLANTED_DEMO_MODEL

    if spec in (DEFAULT_MODEL, PLANTED_DEMO_MODEL):
        return Shape.from_config(DEFAULT_MODEL_CONFIG)
    if spec in KNOWN_CONFIGS:
        return Shape.from_config(KNOWN_CONFIGS[spec])
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return Shape.from_config(json.loads((path / "config.json").read_text()))
    if path.exists():
        return None
    try:
        from transformers import AutoConfig

        return Shape.from_config(AutoConfig.from_pretrained(spec).to_dict())
    except Exception:  # offline, private or unknown: no estimate rather than a failure
        return None


def model_parameters(spec: str) -> int | None:
    shape = model_shape(spec)
    return None if shape is None else shape.parameters


@dataclass(frozen=True)
class Memory:
    """Bytes per component; ``total`` is what the estimate says a unit's peak is."""

    weights: float = 0
    gradients: float = 0
    optimizer: float = 0
    autocast_copies: float = 0
    reference_model: float = 0
    activations: float = 0
    logits: float = 0
    kv_cache: float = 0

    @property
    def total(self) -> float:
        return sum(asdict(self).values())


@dataclass(frozen=True)
class Training:
    """The settings of a unit's training that decide its memory (resolved: no ``auto`` left but the precision's)."""

    mode: str = "full"
    lora_r: int = 8
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    train_layers: tuple[int, int] | None = None
    precision: str = "auto"
    optimizer: str = "adamw"
    checkpointing: bool = False
    reference_model: bool = False
    rows: int = 8  # sequences per micro-batch (DPO: twice its batch)
    tokens: int = 512


def trainable_parameters(shape: Shape, training: Training) -> int:
    layers = training.train_layers[1] - training.train_layers[0] if training.train_layers else shape.layers
    if training.mode == "lora":
        sizes = shape.module_sizes()
        return layers * sum(training.lora_r * sum(sizes[t]) for t in training.lora_targets if t in sizes)
    return layers * shape.per_layer if training.train_layers else shape.parameters


def training_memory(shape: Shape, weight_bytes: int, training: Training) -> Memory:
    """Peak bytes of a training step (see the module docstring for what is counted)."""
    precision = training.precision if training.precision != "auto" else ("float32" if weight_bytes == 4 else "bf16-mixed")
    trainable = trainable_parameters(shape, training)
    master = precision in ("float32", "bf16-mixed")  # the loop upcasts to float32 master weights
    if training.mode == "lora":  # the adapter is float32 (peft), with float32 gradients and moments
        weights = shape.parameters * (4 if precision == "float32" else weight_bytes) + trainable * 4
        gradient, moments = 4, 8
    else:
        weights = shape.parameters * (4 if master else weight_bytes)
        gradient, moments = (4, 8) if master else (weight_bytes, 2 * weight_bytes)
    act = {"float32": 4, "bf16-mixed": 2}.get(precision, weight_bytes)
    if training.optimizer == "adamw8bit":
        moments = 2
    per_token_layer = ACTIVATION_HIDDEN * shape.hidden + ACTIVATION_INNER * shape.inner
    tokens = training.rows * training.tokens
    if training.checkpointing:
        activations = tokens * (shape.layers * shape.hidden + per_token_layer) * act
    else:
        activations = tokens * shape.layers * per_token_layer * act
    return Memory(weights=weights, gradients=trainable * gradient, optimizer=trainable * moments,
                  autocast_copies=trainable * 2 if precision == "bf16-mixed" else 0,
                  reference_model=shape.parameters * weight_bytes if training.reference_model and training.mode == "full" else 0,
                  activations=activations, logits=tokens * shape.vocab * (act + 8))


def evaluation_memory(shape: Shape, weight_bytes: int, batch_size: int) -> Memory:
    """Peak bytes of evaluation: weights, the KV cache of a generation batch, the float32 logits of a scoring batch."""
    kv = 2 * shape.layers * batch_size * EVAL_TOKENS * shape.kv_heads * shape.head_dim * weight_bytes
    return Memory(weights=shape.parameters * weight_bytes, kv_cache=kv, logits=batch_size * SCORE_TOKENS * shape.vocab * 4)


def unit_training(task: UnitTask, method: Any) -> Training:
    """The memory-relevant training settings of a unit, from its key."""
    section = task.key["method"]
    mode, train = section["mode"], section.get("train", {})
    layers = mode.get("train_layers")
    device = task.key["eval"].get("device", "cpu")
    checkpointing = train.get("gradient_checkpointing", "auto")
    return Training(mode=mode["mode"], lora_r=mode.get("lora_r", 8), lora_targets=tuple(mode.get("lora_targets", ("q_proj", "v_proj"))),
                    train_layers=tuple(layers) if layers else None, precision=train.get("precision", "auto"),
                    optimizer=train.get("optimizer", "adamw"),
                    checkpointing=checkpointing == "on" or (checkpointing == "auto" and mode["mode"] == "full" and device == "cuda"),
                    reference_model=getattr(method, "needs_original", False),
                    rows=train.get("batch_size", 8) * getattr(method, "rows_per_example", 1), tokens=train.get("max_length", 512))


def unit_memory(task: UnitTask) -> dict[str, Memory] | None:
    """Estimated memory of one unit's evaluation and (for a trained method) training, or None when the shape is unknown."""
    from rwku.methods import METHODS

    shape = model_shape(task.job.run.model)
    if shape is None:
        return None
    width = BYTES.get(task.key["eval"]["dtype"], 4)
    memory = {"evaluation": evaluation_memory(shape, width, task.job.run.batch_size)}
    method = METHODS[task.method] if task.method else None
    if method is not None and method.trains:
        memory["training"] = training_memory(shape, width, unit_training(task, method))
    audits = task.key.get("audits")
    if audits:  # after training: the unlearned model, the original and an attacked copy (training too, to relearn fully)
        relearn_full = "relearn" in audits["names"] and audits["settings"].get("relearn_mode") == "full"
        memory["audits"] = Memory(weights=(6 if relearn_full else 3) * shape.parameters * width)
    return memory


def unit_memory_gib(task: UnitTask) -> float | None:
    """Estimated peak GPU memory of one unit in GiB (the larger of training, evaluation and audits), or None when unknown."""
    memory = unit_memory(task)
    return None if memory is None else max(m.total for m in memory.values()) / 2**30
