"""Decoding: how prompts go through a model and continuations come out, one module per concern.

:mod:`~rwku.models.decoding.cache` the KV cache (preallocated layers); :mod:`~rwku.models.decoding.prefill` prompts
through the model (shared-prefix batches under ``fast`` kernels, one row in line-end chunks under invariant ones);
:mod:`~rwku.models.decoding.choice` how the next token is picked (greedy or a row's own seeded draw);
:mod:`~rwku.models.decoding.fast` batched decoding; :mod:`~rwku.models.decoding.slots` slot decoding (invariant
kernels: fixed-shape passes of positions from any rows); :mod:`~rwku.models.decoding.drafting` prompt-lookup drafts
the slots verify; :mod:`~rwku.models.decoding.generate` the entry (:func:`generate_tokens`, the decoded text).
Nothing is imported here: import the module you need.
"""
