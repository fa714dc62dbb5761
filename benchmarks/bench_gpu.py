"""Benchmark: decode steps of a Llama-3-8B-shaped model with random weights, eager against the fast path, beside
the memory-bandwidth floor. No download: the model is built here from its shape (bfloat16 on the GPU).

A decode step of batch B reads every weight once and every row's KV cache once, so it cannot beat
(weight bytes + B x context x KV bytes per token) / the card's bandwidth: the floor printed beside each time.
The eager path is transformers' forward on a growing dynamic cache, one Python-driven kernel launch after
another; the fast path keeps a static, preallocated cache and, on a GPU, captures the step once
(``torch.compile(mode="reduce-overhead")``, i.e. CUDA graphs) and replays it. Steps, not an evaluation: with
random weights no row ever stops, so every step is timed at full batch; both paths are fed the same tokens, and
the largest logit difference between them is printed (the two paths must compute the same thing).

    python benchmarks/bench_gpu.py                          # on the GPU: the 8B shape, batch 1/8/32/128
    python benchmarks/bench_gpu.py --tiny --device cpu      # a tiny shape on the CPU (static cache, not compiled)

Not measured in the session that wrote it (no GPU): docs/performance.md says so until someone runs it on one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, StaticCache

from rwku.io import write_json_atomic

#: Llama-3-8B's shape (meta-llama/Meta-Llama-3-8B config.json).
LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0)
#: A shape small enough for a CPU test of the same code.
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024)
#: Memory bandwidth in bytes per second by GPU name (the vendors' datasheets), for the floor.
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L40S": 0.864e12, "A10": 0.6e12}


@dataclass
class Timing:
    batch: int
    eager_ms: float
    fast_ms: float
    floor_ms: float
    largest_logit_difference: float


def build_model(shape: dict, dtype: torch.dtype, device: torch.device, seed: int = 0) -> LlamaForCausalLM:
    """Random weights of the given shape, created directly in ``dtype`` on ``device`` (no float32 copy of 8B)."""
    torch.manual_seed(seed)
    config = LlamaConfig(**shape, tie_word_embeddings=False, initializer_range=0.02)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def bandwidth_of(device: torch.device, given: float | None) -> float:
    """The card's bandwidth in bytes/s: ``given`` (GB/s) when set, else looked up by the GPU's name."""
    if given:
        return given * 1e9
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in BANDWIDTH.items():
            if key in name:
                return value
    raise SystemExit(f"bench_gpu: no known bandwidth for {device}; pass --bandwidth GB/s")


def floor_seconds(model: LlamaForCausalLM, batch: int, context: int, bandwidth: float) -> float:
    """Bytes one decode step must read (every weight, every row's KV cache) over the bandwidth."""
    config = model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    element = next(model.parameters()).element_size()
    kv_per_token = config.num_hidden_layers * 2 * config.num_key_value_heads * (config.hidden_size // config.num_attention_heads) * element
    return (weight_bytes + batch * context * kv_per_token) / bandwidth


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_steps(model: LlamaForCausalLM, cache, prompt: torch.Tensor, tokens: torch.Tensor, step, warmup: int) -> tuple[float, torch.Tensor]:
    """Prefill ``prompt`` into ``cache``, then decode ``tokens`` one column per step through ``step``; the mean
    seconds of the steps after ``warmup``, and the last step's logits."""
    device = prompt.device
    batch, context = prompt.shape
    model(input_ids=prompt, cache=cache, use_cache=True, logits_to_keep=1)
    synchronize(device)
    started = None
    for i in range(tokens.shape[1]):
        if i == warmup:
            synchronize(device)
            started = time.perf_counter()
        position = torch.full((batch, 1), context + i, device=device, dtype=torch.long)
        logits = step(tokens[:, i: i + 1], position, cache)
    synchronize(device)
    return (time.perf_counter() - started) / (tokens.shape[1] - warmup), logits.float().clone()


def eager_step(model: LlamaForCausalLM):
    def step(ids, position, cache):
        return model(input_ids=ids, position_ids=position, cache=cache, use_cache=True).logits
    return step


def fast_step(model: LlamaForCausalLM, compiled: bool):
    """The static-cache step, captured as a CUDA graph by ``torch.compile`` when ``compiled``."""
    def step(ids, position, cache):
        return model(input_ids=ids, position_ids=position, cache=cache, use_cache=True).logits
    return torch.compile(step, mode="reduce-overhead", fullgraph=False) if compiled else step


def measure(model: LlamaForCausalLM, batch: int, context: int, steps: int, warmup: int, bandwidth: float,
            compiled: bool) -> Timing:
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(batch)
    vocab = model.config.vocab_size
    prompt = torch.randint(vocab, (batch, context), generator=generator).to(device)
    tokens = torch.randint(vocab, (batch, steps), generator=generator).to(device)
    eager, eager_logits = time_steps(model, DynamicCache(config=model.config), prompt, tokens, eager_step(model), warmup)
    static = StaticCache(config=model.config, max_cache_len=context + steps)
    fast, fast_logits = time_steps(model, static, prompt, tokens, fast_step(model, compiled), warmup)
    return Timing(batch, eager * 1e3, fast * 1e3, floor_seconds(model, batch, context + steps, bandwidth) * 1e3,
                  float((eager_logits - fast_logits).abs().max()))


def table(timings: list[Timing], fast_name: str) -> str:
    lines = [f"| batch | eager ms/step | {fast_name} ms/step | bandwidth floor ms | eager / floor | fast / floor | largest logit difference |",
             "|---|---|---|---|---|---|---|"]
    for t in timings:
        lines.append(f"| {t.batch} | {t.eager_ms:.2f} | {t.fast_ms:.2f} | {t.floor_ms:.2f} | {t.eager_ms / t.floor_ms:.1f}x | "
                     f"{t.fast_ms / t.floor_ms:.1f}x | {t.largest_logit_difference:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape in float32 (to try the code on a CPU)")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--context", type=int, default=512, help="tokens in each row's cache before the timed steps")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=4, help="steps not timed (compilation and graph capture)")
    parser.add_argument("--bandwidth", type=float, help="the device's memory bandwidth in GB/s (else looked up for known GPUs)")
    parser.add_argument("--no-compile", action="store_true", help="the fast path without torch.compile (static cache only)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    compiled = device.type == "cuda" and not args.no_compile
    model = build_model(TINY if args.tiny else LLAMA3_8B, torch.float32 if args.tiny else torch.bfloat16, device)
    bandwidth = bandwidth_of(device, args.bandwidth)
    timings = [measure(model, int(b), args.context, args.steps, args.warmup, bandwidth, compiled) for b in args.batch_sizes.split(",")]
    fast_name = "static cache + CUDA graphs" if compiled else "static cache"
    shape = "tiny" if args.tiny else "Llama-3-8B"
    text = (f"{shape}-shaped model, random weights, {next(model.parameters()).dtype}, {device}, context {args.context}, "
            f"{args.steps - args.warmup} timed steps, bandwidth {bandwidth / 1e9:.0f} GB/s\n\n" + table(timings, fast_name))
    print(text, flush=True)
    if args.json:
        write_json_atomic(args.json, {"shape": shape, "device": str(device), "compiled": compiled, "context": args.context,
                                      "bandwidth": bandwidth, "timings": [t.__dict__ for t in timings]})
    return text


if __name__ == "__main__":
    main()
