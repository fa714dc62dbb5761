"""The KV cache decoding writes into: transformers' ``DynamicCache`` with full-attention layers that preallocate
room to grow (:class:`PreallocatedLayer`), and the name under which a model's forward takes it.

It leans on transformers internals (``DynamicLayer.lazy_initialization`` and ``is_initialized``, ``DynamicCache``'s
``layers``); ``tests/test_transformers_internals.py`` fails, naming the installed version, when one of them moves.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def cache_argument(model: Any) -> str:
    """Name of the forward argument that takes the KV cache (``cache`` from transformers 5.2x on)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrappers take **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class PreallocatedLayer(DynamicLayer):
    """A KV-cache layer that writes into a buffer with room to grow instead of concatenating at every step.

    transformers' ``DynamicLayer`` re-allocates and copies the whole cache at every generated token, which on a
    CPU costs as much as the attention itself for long prompts. The layer keeps ``keys``/``values`` as views of
    its buffers, so everything that reads them (masks, ``get_seq_length``, attention) works unchanged.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def _expose(self) -> None:
        self.keys = self.key_buffer[..., : self.length, :]
        self.values = self.value_buffer[..., : self.length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        needed = self.length + key_states.shape[-2]
        if self.key_buffer is None or needed > self.key_buffer.shape[-2]:
            size = max(needed, self.capacity)
            keys = key_states.new_empty((*key_states.shape[:2], size, key_states.shape[-1]))
            values = value_states.new_empty((*value_states.shape[:2], size, value_states.shape[-1]))
            if self.length:
                keys[..., : self.length, :] = self.key_buffer[..., : self.length, :]
                values[..., : self.length, :] = self.value_buffer[..., : self.length, :]
            self.key_buffer, self.value_buffer = keys, values
        self.key_buffer[..., self.length: needed, :] = key_states
        self.value_buffer[..., self.length: needed, :] = value_states
        self.length = needed
        self._expose()
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0 and self.length:
            self.length = max(self.length + tokens_to_remove, 0)
            self._expose()

    def reset(self) -> None:
        super().reset()
        self.key_buffer = self.value_buffer = None
        self.length = 0


def make_cache(model: Any, capacity: int) -> DynamicCache:
    """A dynamic cache whose full-attention layers preallocate ``capacity`` positions (sliding ones are kept)."""
    cache = DynamicCache(config=model.config)
    cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def caches_merge(model: Any) -> bool:
    """Whether :func:`merge_prefills` can stack this model's caches: every layer full attention (no sliding window)."""
    return all(isinstance(layer, PreallocatedLayer) for layer in make_cache(model, 1).layers)
