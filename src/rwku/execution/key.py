"""The declared cache key of a unit: exactly what decides its numbers, and nothing else.

A stored unit is reused when its key equals the key of the unit asked for. The key is built here from named
fields, never from "whatever a config dict holds":

* ``version``: the result schema; raised when a change makes stored results incomparable.
* ``model``: the model as given, and a fingerprint of its files (size and the first and last MiB of each file; the
  package version for the embedded default; the planting key for ``smollm2-135m-demo``), so a replaced checkpoint
  under the same path, or a model planted with another recipe, is not reused
  (:func:`rwku.models.fingerprint.model_fingerprint`).
  A served model (``openai:NAME``) is what its server reports of it (``GET /v1/models``: the name, and whatever
  else the server says, vLLM's root and maximum length, llama.cpp's parameter count and size, ``rwku serve``'s
  fingerprint of the files it loaded), and the tokenizer that renders its prompts with its fingerprint; its
  ``eval`` device and dtype are ``server``.
* ``unit``: the targets and a fingerprint of the unit's records as stored, so edited data is not reused
  (:func:`rwku.data.loader.data_fingerprint`).
* ``eval``: sets, limit, protocol fixes, prompt format and preamble, the resolved dtype and device kind, the kernel
  mode (``--kernels``), and the batch size only under ``fast`` kernels: under ``invariant`` (float32, no TF32,
  deterministic cuDNN) every output is tested not to depend on the batch, so a result is reused at any batch
  size; ``fast`` kernels (half precision, TF32) can change results with the batch's shape, so there a result is
  reused only at the batch size that made it.
* ``method`` (method units): the method, the setting, the mode only for methods that train (ICU and RepE ignore
  it), and the method's own parameters, the training loop's settings (seed included) and the corpus's settings,
  with the corpus's own inputs.
* ``audits`` (only when audits are asked): which audits ran and the settings they read; ``unit.audits`` holds their
  per-unit inputs (probe fingerprint, relearning's control target). A unit stored with audits also serves a request
  without them (its scores are the same); a request with audits recomputes a unit stored without.

What is recorded but not part of the key (versions, host, device name, timings) lives beside it in the summary.
A field added to a settings section later does not make stored results stale: a stored key that lacks a field
matches when the asked value is that field's default (:func:`same_key`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Mapping

from rwku.io import json_safe

#: Raised when stored results stop being comparable; what each version changed is in docs/evaluation.md ("Versions").
KEY_VERSION = 3
@lru_cache(maxsize=16)
def served_identity(spec: str, base_url: str | None = None) -> dict[str, Any]:
    """What the server at ``base_url`` (``OPENAI_BASE_URL`` when None) reports of the model ``openai:NAME``; a
    server that is down, or does not serve NAME, is a one-line error here, before any unit runs."""
    import os

    from rwku.models.endpoint import ServedModel, ServedOptions

    if base_url is None:
        return served_identity(spec, os.environ.get("OPENAI_BASE_URL", ""))
    return ServedModel(spec, ServedOptions(retries=1, timeout=60.0)).identity


def resolved_placement(device: str, dtype: str, kernels: str = "invariant") -> tuple[str, str]:
    """The device kind (``cpu``/``cuda``) and dtype name a run will use, without loading anything (a dtype the
    kernel mode does not allow is refused here, before any model work)."""
    from rwku.models.loading import pick_device, pick_dtype

    chosen = pick_device(device)
    return chosen.split(":")[0], str(pick_dtype(dtype, chosen, kernels)).removeprefix("torch.")


def without_audits(key: Mapping[str, Any]) -> dict[str, Any]:
    """``key`` without the audits' sections: what a request that asks for no audits compares."""
    stripped = {k: v for k, v in key.items() if k != "audits"}
    if isinstance(stripped.get("unit"), Mapping):
        stripped["unit"] = {k: v for k, v in stripped["unit"].items() if k != "audits"}
    return stripped


def comparable(stored: Mapping[str, Any], asked: Mapping[str, Any]) -> dict[str, Any]:
    """The stored key as JSON, its audits left out when the request asks for none."""
    return json.loads(json.dumps(json_safe(stored if "audits" in asked else without_audits(stored))))


def strip_defaults(stored: Mapping[str, Any], asked: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]]) -> dict:
    """``asked`` without the settings fields that ``stored`` lacks and that are at their default (see :func:`same_key`)."""
    result = json.loads(json.dumps(json_safe(asked)))
    stored_method, asked_method = stored.get("method") or {}, result.get("method") or {}
    for section, fields in defaults.items():
        if isinstance(asked_method.get(section), dict):
            kept = stored_method.get(section) or {}
            for name, default in fields.items():
                if name not in kept and asked_method[section].get(name) == json.loads(json.dumps(json_safe(default))):
                    asked_method[section].pop(name, None)
    return result


def same_key(stored: Mapping[str, Any] | None, asked: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]] = {}) -> bool:
    """Whether a stored key satisfies the asked one (compared as JSON: tuples and lists alike, NaN as null).

    ``defaults`` maps a settings section (``train``, ``corpus``, ``params``) to its fields' defaults: a field the
    stored key lacks (it was added to rwku later) matches when the asked value is its default.
    """
    if not isinstance(stored, Mapping):
        return False
    return comparable(stored, asked) == strip_defaults(stored, asked, defaults)


def differences(stored: Mapping[str, Any] | None, asked: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]] = {}) -> str:
    """Why a stored unit is stale, for ``--dry-run``: the first few differing dotted paths."""
    if not isinstance(stored, Mapping):
        return "stored before keys were declared" if stored is None else "no key"
    flat_stored, flat_asked = flat(comparable(stored, asked)), flat(strip_defaults(stored, asked, defaults))
    changed = sorted(k for k in set(flat_stored) | set(flat_asked) if flat_stored.get(k, "∅") != flat_asked.get(k, "∅"))
    shown = [f"{k}: {flat_stored.get(k, '∅')} → {flat_asked.get(k, '∅')}" for k in changed[:3]]
    return "; ".join(shown) + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else "")


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}."))
    return out
