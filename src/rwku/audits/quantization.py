"""Quantization audit: does the forgotten knowledge come back when the unlearned model is quantized?

Source: Zhang et al., "Catastrophic Failure of LLM Unlearning via Quantization", ICLR 2025: unlearning with a
utility constraint moves the weights so little that rounding them to 4 bits undoes it (83% of the forgotten
knowledge returned at 4 bits, 21% at full precision).

Weight-only round-to-nearest (RTN) quantization, symmetric per group of ``group_size`` input weights of each output
row (the scale is the group's largest magnitude over 2^(b−1) − 1; no zero point), of every linear layer of the
decoder blocks, in torch, so it runs on a CPU and a GPU. The output head is kept at full precision, as the paper's
weight-only quantizers (RTN, AWQ, GPTQ) keep it; it is tied to the input embeddings in many small models. A LoRA
adapter is merged first, into a copy: the model that is still to be evaluated is never altered. RepE's hooks travel
with the copy and ICU's preamble is kept, so the quantized model is the unlearned model as it is evaluated.
``quant_backend=bitsandbytes`` quantizes with bitsandbytes' own kernels (8-bit blockwise, 4-bit FP4) where the
package and a CUDA GPU are present, and says so otherwise.

The original model quantized the same way is reported beside it (``controls.original_quantized``): what
quantization alone does to the knowledge.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import torch

from rwku.audits.base import Audit, AuditResult, AuditSubject, mean_score, plain_copy, probe_rows, scores
from rwku.errors import RwkuError
from rwku.methods.repe import decoder_layers


def quantize_weight(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """RTN of a [out, in] weight: symmetric per group of ``group_size`` consecutive inputs of each row; returns the
    dequantized weight in the weight's dtype. Error per weight ≤ half the group's step (max |w| / (2^(b−1) − 1))."""
    out_features, in_features = weight.shape
    levels = 2 ** (bits - 1) - 1
    pad = (-in_features) % group_size
    w = torch.nn.functional.pad(weight.detach().float(), (0, pad)).reshape(out_features, -1, group_size)
    scale = w.abs().amax(dim=-1, keepdim=True) / levels
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    quantized = torch.clamp(torch.round(w / scale), -levels, levels) * scale
    return quantized.reshape(out_features, -1)[:, :in_features].to(weight.dtype)


def quantized_linears(model: Any) -> list[torch.nn.Linear]:
    """Every linear layer inside the decoder blocks (attention and MLP projections)."""
    return [m for layer in decoder_layers(model) for m in layer.modules() if isinstance(m, torch.nn.Linear)]


@torch.no_grad()
def quantize_model(model: Any, bits: int, group_size: int, backend: str = "torch") -> Any:
    """A quantized copy of ``model`` (LoRA merged first); ``model`` itself is left as it was."""
    clone = plain_copy(model)
    quantize = torch_quantizer(bits, group_size) if backend == "torch" else bitsandbytes_quantizer(bits)
    for linear in quantized_linears(clone):
        linear.weight.copy_(quantize(linear.weight))
    return clone


def torch_quantizer(bits: int, group_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda weight: quantize_weight(weight, bits, group_size)


def bitsandbytes_missing() -> str | None:
    """Why the bitsandbytes backend cannot run here, or None when it can."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def bitsandbytes_quantizer(bits: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """bitsandbytes' own rounding (8-bit blockwise, 4-bit FP4, block 64), dequantized back into the weight."""
    missing = bitsandbytes_missing()
    if missing:
        raise RwkuError(f"--audit-set quant_backend=bitsandbytes: {missing}; use quant_backend=torch")
    import bitsandbytes.functional as bnb

    def quantize(weight: torch.Tensor) -> torch.Tensor:
        w = weight.detach().to("cuda", torch.float16)
        if bits == 8:
            values, state = bnb.quantize_blockwise(w)
            restored = bnb.dequantize_blockwise(values, state)
        else:
            values, state = bnb.quantize_4bit(w, quant_type="fp4")
            restored = bnb.dequantize_4bit(values, state, quant_type="fp4")
        return restored.to(weight.device, weight.dtype)

    return quantize


#: Methods that leave the weights as they were: quantizing them is no reversal of what the method did.
NOT_WEIGHTS = {"icu": "ICU changes only the prompt: this quantizes the original weights and keeps the preamble, "
                      "so it measures quantization of the base model under ICU, not a reversal of unlearning",
               "repe": "RepE changes no weight: this quantizes the original weights and keeps the steering hooks "
                       "(at full precision), so it measures quantization of the base model under steering"}


def run_quantization(subject: AuditSubject, bits: int) -> AuditResult:
    """Forget and neighbour probes on the quantized unlearned model, beside the unlearned and original models and
    the original model quantized the same way."""
    settings = subject.settings
    forget_before, forget_original = subject.baseline("unlearned", "forget"), subject.baseline("original", "forget")
    quantized = quantize_model(subject.model, bits, settings.group_size, settings.quant_backend)
    layers = len(quantized_linears(quantized))
    forget, neighbor = subject.evaluate(quantized, subject.forget, "forget"), subject.evaluate(quantized, subject.neighbor, "neighbor")
    del quantized
    original_quantized = quantize_model(subject.original(), bits, settings.group_size, settings.quant_backend)
    control_forget = subject.evaluate(original_quantized, subject.forget, "forget", as_original=True)
    control_neighbor = subject.evaluate(original_quantized, subject.neighbor, "neighbor", as_original=True)
    del original_quantized
    summary = scores(mean_score(forget), mean_score(forget_before), mean_score(forget_original), mean_score(neighbor),
                     mean_score(subject.baseline("unlearned", "neighbor")))
    summary.update({"bits": bits, "group_size": settings.group_size, "backend": settings.quant_backend,
                    "layers_quantized": layers, "n_probes": len(forget),
                    "controls": {"original_quantized": {"forget": mean_score(control_forget),
                                                        "neighbor": mean_score(control_neighbor)}}})
    if subject.method in NOT_WEIGHTS:
        summary["note"] = NOT_WEIGHTS[subject.method]
    return AuditResult(summary, {"forget": probe_rows(forget, forget_before, forget_original,
                                                      original_quantized_score=[i["score"] for i in control_forget])})


QUANT8 = Audit("quant8", "8-bit round-to-nearest weights (group 128) of the unlearned model", ("group_size", "quant_backend"),
               lambda subject: run_quantization(subject, 8))
QUANT4 = Audit("quant4", "4-bit round-to-nearest weights (group 128) of the unlearned model", ("group_size", "quant_backend"),
               lambda subject: run_quantization(subject, 4))
