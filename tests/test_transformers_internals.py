"""The transformers internals rwku's decoding relies on, checked one by one: when a transformers release moves one,
the suite fails here, naming the installed version and the rwku module that needs it, instead of somewhere deep in
a decoding test (or not at all, with a quietly different code path)."""

from __future__ import annotations

import inspect

import torch
import transformers
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer

from rwku.models.decoding import slots
from rwku.models.decoding.cache import PreallocatedLayer, cache_argument, caches_merge, make_cache


def moved(what: str, user: str) -> str:
    return f"transformers {transformers.__version__}: {what} is gone or changed; {user} relies on it (pin a version it has, or adapt it)"


def test_dynamic_layer_still_initializes_lazily_and_delegates_the_methods_preallocated_layers_override():
    for name in ("lazy_initialization", "is_initialized", "update", "batch_repeat_interleave", "batch_select_indices",
                 "crop", "reset"):
        assert hasattr(DynamicLayer(), name), moved(f"DynamicLayer.{name}", "rwku.models.decoding.cache.PreallocatedLayer")
    layer = PreallocatedLayer(capacity=4)
    assert layer.is_initialized is False, moved("DynamicLayer.is_initialized (False before the first update)", "PreallocatedLayer")
    keys = torch.randn(1, 2, 3, 8)
    layer.update(keys, keys.clone())
    assert layer.is_initialized is True and torch.equal(layer.keys, keys), moved("DynamicLayer.lazy_initialization", "PreallocatedLayer")


def test_dynamic_cache_builds_its_layers_from_the_config_and_calls_them(tiny_lm):
    config = tiny_lm.model.config
    plain = DynamicCache(config=config)
    assert [type(layer) for layer in plain.layers] == [DynamicLayer] * config.num_hidden_layers, \
        moved("DynamicCache(config=...).layers (one DynamicLayer per full-attention layer)", "rwku.models.decoding.cache.make_cache")
    cache = make_cache(tiny_lm.model, capacity=8)
    keys = torch.randn(2, 2, 3, 8)
    for index in range(config.num_hidden_layers):
        cache.update(keys, keys.clone(), index)
    cache.batch_select_indices(torch.tensor([1]))
    assert all(layer.length == 3 and layer.key_buffer.shape[0] == 1 for layer in cache.layers), \
        moved("DynamicCache delegating update/batch_select_indices to its layers", "PreallocatedLayer")
    assert caches_merge(tiny_lm.model)


def test_the_forward_pass_still_takes_the_cache_under_a_name_rwku_knows(tiny_lm):
    parameters = inspect.signature(tiny_lm.model.forward).parameters
    assert cache_argument(tiny_lm.model) in parameters and {"cache", "past_key_values"} & set(parameters), \
        moved("the forward argument that takes the KV cache (cache / past_key_values)", "rwku.models.decoding.cache.cache_argument")


def test_a_registered_attention_function_is_still_reached_through_config_attn_implementation(tiny_lm, monkeypatch):
    """``slots.attention_by_slot`` sets ``config._attn_implementation`` to the name ``slots`` registered with
    ``AttentionInterface``; the model's attention layers must then call that function, with the extra keyword."""
    config = tiny_lm.model.config
    assert isinstance(getattr(config, "_attn_implementation", None), str), \
        moved("PretrainedConfig._attn_implementation", "rwku.models.decoding.slots.attention_by_slot")
    calls = []

    def counting(module, query, key, value, attention_mask, **kwargs):
        calls.append(kwargs.get("rwku_slots"))
        return slots.slot_attention(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(slots.SLOT_ATTENTION, counting)
    try:
        prompt = [5, 6, 7]
        row = slots.SlotRow(index=0, text=list(prompt), generated=[], length=0,
                            keys=[torch.zeros(1, 2, 8, 8) for _ in range(config.num_hidden_layers)],
                            values=[torch.zeros(1, 2, 8, 8) for _ in range(config.num_hidden_layers)])
        passes = [slots.Slot(row, position, token) for position, token in enumerate(prompt)]
        saved = config._attn_implementation
        logits = slots.run_slots(tiny_lm.model, passes)
        assert config._attn_implementation == saved
    finally:
        AttentionInterface.register(slots.SLOT_ATTENTION, slots.slot_attention)
    assert len(calls) == config.num_hidden_layers and all(c is not None for c in calls), \
        moved("attention dispatch through AttentionInterface by config._attn_implementation, with extra forward keywords",
              "rwku.models.decoding.slots")
    with torch.no_grad():
        plain = tiny_lm.model(input_ids=torch.tensor([prompt])).logits[0].float()
    assert torch.allclose(logits, plain, atol=1e-4, rtol=1e-4), moved("the attention call's arguments (query/key/value layout)", "slot_attention")
