"""Training configuration: hyper-parameters, the fine-tuning mode, and the paper's presets.

Presets are keyed ``(method, mode, setting)``. The ``paper`` presets are the paper's values for
Llama-3-8B-Instruct (appendix H; cosine schedule, 20 warm-up steps, AdamW, seed 42, cutoff 512). The ``small``
presets are for the ~135M default model on a CPU: far fewer, far larger steps, chosen to visibly move it
(measured and explained in the README).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from rwku.errors import RwkuError


@dataclass(frozen=True)
class ModeConfig:
    """Which parameters train: all (``full``), a LoRA adapter (``lora``), optionally only layers a…b−1."""

    mode: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    train_layers: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("full", "lora"):
            raise RwkuError(f"--mode {self.mode}: choose full or lora")
        if self.train_layers is not None and not (0 <= self.train_layers[0] < self.train_layers[1]):
            raise RwkuError(f"--train-layers {self.train_layers[0]}-{self.train_layers[1]}: need a-b with 0 <= a < b")

    @property
    def label(self) -> str:
        layers = f"-layers{self.train_layers[0]}-{self.train_layers[1]}" if self.train_layers else ""
        return f"{self.mode}{layers}"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one unlearning run (the effective batch is ``batch_size × grad_accum``)."""

    lr: float = 1e-5
    batch_size: int = 4
    grad_accum: int = 2
    epochs: int = 3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512
    beta: float = 0.1
    seed: int = 42
    # corpus sizes (official: 582 texts, 300 questions) and generation length
    corpus_size: int = 582
    question_count: int = 300
    corpus_max_new_tokens: int = 512
    # RepE
    alpha: float = 1.0
    repe_layers: tuple[int, int] | None = None

    def with_overrides(self, overrides: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for key, value in overrides.items():
            key = key.replace("-", "_")
            if key not in known:
                raise RwkuError(f"unknown hyper-parameter {key!r}; known: {', '.join(known)}")
            if value is None:
                continue
            current = getattr(self, key)
            if isinstance(current, tuple) or key == "repe_layers":
                value = parse_range(value) if isinstance(value, str) else tuple(value)
            elif isinstance(current, bool):
                value = bool(value)
            elif isinstance(current, int):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            clean[key] = value
        return dataclasses.replace(self, **clean)


def parse_range(text: str) -> tuple[int, int]:
    """``"4-8"`` -> ``(4, 8)``."""
    try:
        low, high = (int(x) for x in str(text).split("-"))
    except ValueError as exc:
        raise RwkuError(f"{text!r}: expected a range like 4-8") from exc
    return low, high


def _paper(lr: float, batch: int, epochs: int) -> dict[str, Any]:
    """Paper values: effective batch as 4 × accumulation (the official scripts' per-device batch)."""
    return {"lr": lr, "batch_size": min(batch, 4), "grad_accum": max(batch // 4, 1), "epochs": epochs, "warmup_steps": 20}


#: (method, mode, setting) -> overrides of TrainConfig; "paper" = Llama-3-8B values from appendix H.
PAPER_PRESETS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("ga", "full", "single"): _paper(6e-8, 8, 3),
    ("ga", "lora", "single"): _paper(1e-5, 8, 3),
    ("ga", "full", "batch"): _paper(3e-8, 8, 2),
    ("ga_passage", "full", "single"): _paper(1e-6, 4, 4),
    ("ga_passage", "lora", "single"): _paper(2e-5, 4, 6),
    ("npo", "full", "single"): {**_paper(2e-6, 16, 3), "beta": 0.2},
    ("npo", "lora", "single"): {**_paper(5e-5, 16, 3), "beta": 0.2},
    ("npo", "full", "batch"): {**_paper(1e-6, 16, 2), "beta": 0.2},
    ("dpo", "full", "single"): {**_paper(5e-6, 8, 3), "beta": 0.1},
    ("dpo", "lora", "single"): {**_paper(6e-5, 8, 3), "beta": 0.1},
    ("dpo", "full", "batch"): {**_paper(2e-6, 8, 2), "beta": 0.1},
    ("rt", "full", "single"): _paper(4e-7, 8, 3),
    ("rt", "lora", "single"): _paper(3e-5, 8, 3),
    ("rt", "full", "batch"): _paper(1e-7, 8, 1),
}

#: Presets for the ~135M default model on CPU: small corpora, few steps, large rates (see README for why).
SMALL_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    (method, mode): {"lr": 3e-3 if mode == "lora" else 5e-5, "batch_size": 4, "grad_accum": 1, "epochs": 3, "warmup_steps": 0,
                     **({"beta": 0.2} if method == "npo" else {"beta": 0.1} if method == "dpo" else {})}
    for method in ("ga", "ga_passage", "npo", "dpo", "rt") for mode in ("lora", "full")
}
SMALL_PRESETS.update({("repe", mode): {"alpha": 0.25} for mode in ("lora", "full")})
SMALL_CORPUS = {"corpus_size": 8, "question_count": 8, "corpus_max_new_tokens": 96, "max_length": 256}


def resolve_config(method: str, mode: str, setting: str, preset: str, overrides: Mapping[str, Any],
                   config_file: Path | None = None) -> TrainConfig:
    """Defaults, then the preset, then a JSON config file, then command-line overrides (later wins)."""
    config = TrainConfig()
    if preset == "paper":
        key = (method, mode, setting)
        values = PAPER_PRESETS.get(key) or PAPER_PRESETS.get((method, mode, "single"), {})
        config = config.with_overrides(values)
    elif preset == "small":
        config = config.with_overrides({**SMALL_CORPUS, **SMALL_PRESETS.get((method, mode), {})})
    elif preset != "none":
        raise RwkuError(f"--preset {preset}: choose paper, small or none")
    if config_file is not None:
        try:
            config = config.with_overrides(json.loads(Path(config_file).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise RwkuError(f"--config {config_file}: cannot read it as JSON ({exc})") from exc
    return config.with_overrides(overrides)
