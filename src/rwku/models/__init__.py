"""Models: loading (hub, folder, GGUF, default), prompting, batched greedy generation and scoring."""

from rwku.models.loading import DEFAULT_MODEL, LoadedModel, load_model
from rwku.models.prompting import PromptFormat

__all__ = ["DEFAULT_MODEL", "LoadedModel", "PromptFormat", "load_model"]
