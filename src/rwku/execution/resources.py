"""What a unit needs from a GPU, estimated before anything is loaded, so ``--dry-run`` can say how many GPUs a
unit should ask Ray for (``--gpus-per-unit``).

The estimate counts what dominates on a large model: the weights in their dtype; for full tuning their gradients
and AdamW's two moment buffers (in the weights' dtype, as the training loop keeps them) and, for methods with a
reference model (NPO, DPO), a frozen copy; LoRA adds its small adapter and its optimiser state; audits hold the
original model and an attacked copy beside the unlearned one (and full relearning trains that copy). Activations and
the KV cache come on top (about a tenth more at RWKU's sequence lengths and batch sizes), so the figure is a floor.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from rwku.execution.plan import UnitTask

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: SmolLM2-135M-Instruct, the embedded default
DEFAULT_MODEL_PARAMETERS = 134_515_008
#: Models the paper and its follow-ups run, for an estimate without reaching the hub
KNOWN_PARAMETERS = {
    "meta-llama/Meta-Llama-3-8B-Instruct": 8_030_261_248,
    "meta-llama/Meta-Llama-3.1-8B-Instruct": 8_030_261_248,
    "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248,
    "microsoft/Phi-3-mini-4k-instruct": 3_821_079_552,
}


def parameters_from_config(config: dict[str, Any]) -> int | None:
    """Parameters of a Llama-style decoder from its config (embeddings, attention with grouped KV heads, MLP)."""
    try:
        hidden, layers, vocab = int(config["hidden_size"]), int(config["num_hidden_layers"]), int(config["vocab_size"])
        inner = int(config.get("intermediate_size") or 4 * hidden)
        heads = int(config.get("num_attention_heads") or 1)
        kv_heads = int(config.get("num_key_value_heads") or heads)
    except (KeyError, TypeError, ValueError):
        return None
    head_dim = int(config.get("head_dim") or hidden // heads)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    per_layer = attention + 3 * hidden * inner + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return embeddings + layers * per_layer + hidden


@lru_cache(maxsize=16)
def model_parameters(spec: str) -> int | None:
    """The model's parameter count from its local config (the hub is only asked where it is reachable)."""
    from rwku.models.loading import DEFAULT_MODEL, PLANTED_DEMO_MODEL

    if spec in (DEFAULT_MODEL, PLANTED_DEMO_MODEL):  # planting changes the weights, not their count
        return DEFAULT_MODEL_PARAMETERS
    if spec in KNOWN_PARAMETERS:
        return KNOWN_PARAMETERS[spec]
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return parameters_from_config(json.loads((path / "config.json").read_text()))
    if path.exists():
        return None
    try:
        from transformers import AutoConfig

        return parameters_from_config(AutoConfig.from_pretrained(spec).to_dict())
    except Exception:  # offline, private or unknown: no estimate rather than a failure
        return None


def unit_memory_gib(task: UnitTask) -> float | None:
    """Estimated GPU memory of one unit in GiB, or None when the model's size is unknown."""
    from rwku.methods import METHODS

    parameters = model_parameters(task.job.model)
    if parameters is None:
        return None
    width = BYTES.get(task.key["eval"]["dtype"], 4)
    weights = parameters * width
    total = weights
    method = METHODS[task.method] if task.method else None
    if method is not None and method.trains:
        mode = task.key["method"]["mode"]
        if mode["mode"] == "full":
            total += 3 * weights  # gradients and two AdamW moments
            if getattr(method, "needs_reference", False):
                total += weights
        else:
            total += 0.02 * weights  # adapter, its gradients and optimiser state: a few percent at most
    audits = task.key.get("audits")
    if audits:  # after training: the unlearned model, the original and an attacked copy (training too, to relearn fully)
        relearn_full = "relearn" in audits["names"] and audits["settings"].get("relearn_mode") == "full"
        total = max(total, (6 if relearn_full else 3) * weights)
    return total / 2**30
