"""Representation misdirection for unlearning (RMU): scramble the forget text's activations at one layer.

Loss (minimised), with h^ℓ(x) the output of decoder layer ℓ at every counted token of x:

    L = mean ‖h_θ^ℓ(x_forget) − c·u‖² / d  +  α · mean ‖h_θ^ℓ(x_retain) − h_orig^ℓ(x_retain)‖² / d

(each a mean squared error over the counted tokens and the d hidden dimensions, padding left out), u a fixed
random unit vector (uniform entries, normalised, drawn once from the run's seed as WMDP does), c the steering
coefficient, h_orig the original model's activations (with LoRA the adapter switched off, otherwise a frozen
copy), so the retain term is zero before the first step. Only the MLPs of layers ℓ−2 … ℓ train.
Source: Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning" (ICML),
§5 and its ``rmu/unlearn.py`` (Zephyr-7B: ℓ = 7, layers 5–7, c = 6.5, α = 1200, lr 5e-5, batch 4, 150 batches;
WMDP's code updates only ``down_proj`` of those MLPs; rwku trains the whole MLPs, as the method is usually stated).

What trains in each mode (rwku's definition): ``full`` — every weight of the MLPs (gate, up, down projections) of
layers ℓ−2 … ℓ; ``lora`` — LoRA adapters on those MLP projections only (``--lora-targets`` is not used);
``--train-layers a-b`` — the MLPs of layers a … b−1 train and ℓ = b−1, the window's last layer (``--train-layers
5-8`` is WMDP's window; the ``layer`` parameter is then unused). Without it ℓ = ``layer``, or, unset, WMDP's layer 7
of Zephyr's 32 scaled to the model's depth: round(7/32 · layers) (7 of SmolLM2-135M's 30).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rwku.corpus.build import RETAIN
from rwku.errors import RwkuError
from rwku.methods.base import Session
from rwku.methods.config import Preset, small, source, sourced
from rwku.methods.ga import GradientAscent
from rwku.methods.repe import decoder_layers
from rwku.methods.retained import RetainedMethod
from rwku.methods.training import Batch, num_layers, prepare_trainable

WMDP = "Li et al. 2024 (WMDP), Zephyr-7B"
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
#: WMDP's layer 7 of Zephyr-7B's 32, scaled to the depth of the model at hand when ``layer`` is unset
WMDP_LAYER, WMDP_DEPTH = 7, 32
#: smollm2-135m's mean per-token norm of layer 7's output on its small-preset forget corpora of the three demo
#: targets (how it was measured: docs/methods.md, "Methods beyond the paper")
SMOLLM2_LAYER7_NORM = 132.0
#: The small preset's c, a multiple of that norm, and α, calibrated with LoRA on the demo (docs/methods.md: methods
#: beyond the paper): at α = 1200 (WMDP's) the retain term held the model in place for the small preset's 6 steps
SMALL_STEERING_MULTIPLE, SMALL_ALPHA, SMALL_LORA_LR = 2.0, 10.0, 3e-2


def small_rmu(mode: str) -> Preset:
    """The small preset of every trained method with RMU's calibrated c and α (and, for LoRA, its rate; full tuning
    keeps the shared small rate, not calibrated for RMU)."""
    base = small(mode)
    values = {**base.values, "steering_coeff": SMALL_STEERING_MULTIPLE * SMOLLM2_LAYER7_NORM, "alpha": SMALL_ALPHA}
    if mode == "lora":
        values["lr"] = SMALL_LORA_LR
    return Preset(values, f"{base.source}; RMU: c = {SMALL_STEERING_MULTIPLE:g} × layer-7 norm, α, LoRA lr")


@dataclass(frozen=True)
class RmuParams:
    layer: int | None = source(WMDP + ": layer 7 of 32; unset = round(7/32 · the model's layers)", None)
    steering_coeff: float = source(WMDP + " (c = 6.5)", 6.5)
    alpha: float = source(WMDP + " (α = 1200)", 1200.0)


def rmu_window(params: RmuParams, mode: Any, n_layers: int) -> tuple[int, int]:
    """(first, ℓ): the layers whose MLPs train are first … ℓ, the loss reads layer ℓ (see the module docstring)."""
    if mode.train_layers is not None:
        first, last = mode.train_layers[0], mode.train_layers[1] - 1
    else:
        last = params.layer if params.layer is not None else round(WMDP_LAYER / WMDP_DEPTH * n_layers)
        first = max(0, last - 2)
    if not 0 <= last < n_layers:
        raise RwkuError(f"rmu: layer {last} is not a layer of the model (0-{n_layers - 1}); set layer= or --train-layers")
    return first, last


def steering_vector(hidden_size: int, coeff: float, seed: int) -> torch.Tensor:
    """c·u with u uniform on [0, 1)^d normalised to unit length, drawn from its own generator (WMDP's control vector)."""
    direction = torch.rand(hidden_size, generator=torch.Generator().manual_seed(seed))
    return direction / direction.norm() * coeff


def layer_output(model: Any, batch: Batch, layer: int) -> torch.Tensor:
    """The output of decoder layer ``layer`` at every position, [B, T, d], read with a forward hook (the model's
    ``hidden_states`` would give the last layer after the final norm)."""
    captured: list[torch.Tensor] = []

    def keep(module: Any, inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = decoder_layers(model)[layer].register_forward_hook(keep)
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    finally:
        handle.remove()
    return captured[0].float()


def masked_mse(states: torch.Tensor, target: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean squared error over the counted tokens and all hidden dimensions."""
    mask = (batch.loss_mask * batch.attention_mask).float()[..., None]
    squared = (states - target) ** 2 * mask
    return squared.sum() / (mask.sum() * states.shape[-1]).clamp(min=1)


class RepresentationMisdirection(RetainedMethod, GradientAscent):
    name: ClassVar[str] = "rmu"
    description: ClassVar[str] = "RMU: forget activations at layer ℓ pushed to a random direction c·u, retain activations kept"
    paper: ClassVar[str] = "Li et al. 2024, WMDP"
    corpus_kinds: ClassVar[tuple[str, ...]] = ("forget", RETAIN)
    needs_original: ClassVar[bool] = True
    params_type = RmuParams
    presets: ClassVar[dict[tuple[str, str, str], Preset]] = {
        ("paper", "full", "single"): sourced(WMDP + ": lr 5e-5, batch 4, one pass", 5e-5, 4, 1),
        **{("small", mode, "single"): small_rmu(mode) for mode in ("full", "lora")},
    }

    def window(self, session: Session) -> tuple[int, int]:
        return rmu_window(session.params, session.mode, num_layers(session.lm.model))

    def prepare(self, base: Any, session: Session) -> Any:
        """Only the MLPs of the window train: LoRA adapters on their projections, or their weights."""
        first, last = self.window(session)
        mode = dataclasses.replace(session.mode, train_layers=(first, last + 1))
        if mode.mode == "lora":
            return prepare_trainable(base, dataclasses.replace(mode, lora_targets=MLP_PROJECTIONS))
        model = prepare_trainable(base, mode)
        for name, param in model.named_parameters():
            param.requires_grad = param.requires_grad and ".mlp." in name
        return model

    def unlearn(self, session: Session) -> Any:
        unlearned = super().unlearn(session)
        first, last = self.window(session)
        unlearned.log["rmu"] = {"layer": last, "mlp_layers": [first, last], "steering_norm": session.params.steering_coeff}
        return unlearned

    def loss(self, model: Any, batch: Any, session: Session, reference: Any) -> torch.Tensor:
        forget, retain = batch
        layer, params = self.window(session)[1], session.params
        direction = steering_vector(int(model.config.hidden_size), params.steering_coeff, session.train.seed)
        forget_term = masked_mse(layer_output(model, forget, layer), direction.to(forget.input_ids.device), forget)
        with torch.no_grad(), reference.original() as original:
            frozen = layer_output(original, retain, layer)
        return forget_term + params.alpha * masked_mse(layer_output(model, retain, layer), frozen, retain)
