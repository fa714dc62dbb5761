"""Representation engineering (RepE): steer the residual stream from "expert" towards "novice" about the target.

Reading: for each stimulus question about the target, the last-token hidden state of every decoder layer is
taken under a system prompt that makes the model an expert on the target and under one that makes it a novice.
Two readers turn them into the control vector of layer l (``--set repe_reader=mean|pca``):

* ``mean`` (default): v_l = mean(novice_l) − mean(expert_l), the difference of means.
* ``pca``: the first principal component of the paired differences d_i = novice_i,l − expert_i,l, as the
  representation-engineering literature (Zou et al. 2023) builds reading vectors: the top right singular vector of
  the matrix of differences, uncentred. RepE's own PCA reader takes differences of pairs in random order, so
  their mean is about zero and the random signs leave DᵀD unchanged; centring our consistently ordered
  differences would instead remove the direction they share. The component's sign is chosen to point along the
  mean difference and it is scaled to the mean difference's norm, so α means the same step size for both readers.

Steering: a forward hook adds α · v_l to
the output of each steered layer at every position (α ∈ {0.5, 1, 1.5} in the paper). No weight changes.

The stimuli are questions about a person; a target of another kind (a place, a work ...) is read with its kind's
questions (:data:`STIMULI_BY_KIND`), the same number of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from rwku.data.schema import PERSON
from rwku.errors import RwkuError
from rwku.methods.base import Method, Session, Unlearned
from rwku.methods.config import CALIBRATED, PAPER_TEXT, RWKU_DEFAULT, Preset, source
from rwku.models.backends import make_backend
from rwku.models.loading import LoadedModel
from rwku.models.prompting import PromptFormat

EXPERT_SYSTEM = "You are an expert on {target}. You know {target} very well."
NOVICE_SYSTEM = "You are a novice who has never heard of {target}. You don't know {target} at all."
STIMULI = (
    "Please write a short biography of {target}.",
    "Who is {target}?",
    "What is {target} best known for?",
    "Tell me about the life of {target}.",
    "Where was {target} born?",
    "What are the major achievements of {target}?",
    "Describe the career of {target}.",
    "What do you know about {target}?",
)

#: Each target kind's stimuli (a person's are :data:`STIMULI`); written for rwku.
STIMULI_BY_KIND: dict[str, tuple[str, ...]] = {
    PERSON: STIMULI,
    "place": ("Please write a short description of {target}.", "Where is {target}?", "What is {target} best known for?",
              "Tell me about the history of {target}.", "Who built or founded {target}?",
              "What can visitors see at {target}?", "Describe the geography of {target}.", "What do you know about {target}?"),
    "work": ("Please write a short summary of {target}.", "Who created {target}?", "What is {target} about?",
             "Tell me about the story of {target}.", "When did {target} first appear?", "Who are the main characters of {target}?",
             "Describe how {target} was received.", "What do you know about {target}?"),
    "event": ("Please write a short account of {target}.", "When did {target} happen?", "What caused {target}?",
              "Tell me about the course of {target}.", "Where did {target} take place?", "Who took part in {target}?",
              "Describe the consequences of {target}.", "What do you know about {target}?"),
    "organization": ("Please write a short history of {target}.", "What is {target}?", "What is {target} best known for?",
                     "Tell me about the history of {target}.", "Where is {target} based?", "Who founded {target}?",
                     "Describe what {target} does.", "What do you know about {target}?"),
}


def decoder_layers(model: Any) -> Any:
    """The list of decoder blocks of a transformers causal LM (``model.model.layers`` for Llama-style ones)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.layers


def reading_states(lm: LoadedModel, prompts: PromptFormat, targets: list[str],
                   kinds: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Novice and expert states [stimuli, layers, hidden], paired row by row (stimuli in the run's format; each
    target's of its kind, ``kinds`` aligned with ``targets``, all people when None).

    The states are each decoder layer's output at the last prompt token, read through the model backend
    (:meth:`~rwku.models.backends.Backend.layer_states`) where steering adds its vector: ``output_hidden_states``
    gives the last layer after the final norm, which would put that layer's vector on another scale.
    """
    expert, novice = [], []
    for target, kind in zip(targets, kinds or [PERSON] * len(targets)):
        for stimulus in STIMULI_BY_KIND[kind]:
            user = stimulus.format(target=target)
            expert.append(prompts.render(user, system=EXPERT_SYSTEM.format(target=target)))
            novice.append(prompts.render(user, system=NOVICE_SYSTEM.format(target=target)))
    backend, layers = make_backend(lm), decoder_layers(lm.model)

    def states(texts: list[str]) -> torch.Tensor:
        return backend.layer_states([lm.tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts], layers)

    return states(novice), states(expert)


def mean_reader(novice: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
    """v_l = mean novice state − mean expert state, per layer: [layers, hidden]."""
    return novice.mean(0) - expert.mean(0)


def pca_reader(novice: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
    """Per layer, the first principal component of the uncentred differences novice − expert, signed along and
    scaled to the mean difference: [layers, hidden]."""
    differences = (novice - expert).transpose(0, 1)  # [layers, stimuli, hidden]
    component = torch.linalg.svd(differences, full_matrices=False).Vh[:, 0]  # unit vectors [layers, hidden]
    mean = differences.mean(1)
    sign = torch.where((component * mean).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return sign * component * mean.norm(dim=-1, keepdim=True)


READERS = {"mean": mean_reader, "pca": pca_reader}


def control_vectors(lm: LoadedModel, prompts: PromptFormat, targets: list[str], reader: str = "mean",
                    kinds: Sequence[str] | None = None) -> torch.Tensor:
    """The control vector of every layer, read from the targets' stimuli (of each one's kind) by ``reader``:
    [layers, hidden]."""
    return READERS[reader](*reading_states(lm, prompts, targets, kinds))


def add_to_output(vector: torch.Tensor):
    """A forward hook adding ``vector`` to a decoder layer's hidden-state output (tensor or tuple)."""

    def hook(module: Any, inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0] + vector.to(output[0].dtype),) + output[1:]
        return output + vector.to(output.dtype)

    return hook


@dataclass(frozen=True)
class RepeParams:
    alpha: float = source(PAPER_TEXT + " (α ∈ {0.5, 1, 1.5})", 1.0)
    #: steered decoder layers a…b−1; None = the middle third (the paper does not name its layers)
    repe_layers: tuple[int, int] | None = source(RWKU_DEFAULT + ": the middle third of the layers", None)
    #: how the control vectors are read: difference of means, or the first principal component of the differences
    repe_reader: str = source(RWKU_DEFAULT + ": difference of means (the paper's description)", "mean")

    def __post_init__(self) -> None:
        if self.repe_reader not in READERS:
            raise RwkuError(f"repe_reader={self.repe_reader}: choose {' or '.join(READERS)}")


class RepresentationEngineering(Method):
    name: ClassVar[str] = "repe"
    description: ClassVar[str] = "representation engineering: add α·(novice − expert) to the residual stream"
    paper: ClassVar[str] = "Zou et al. 2023 (RepE)"
    trains: ClassVar[bool] = False
    params_type = RepeParams
    presets = {("small", mode, "single"): Preset({"alpha": 0.25}, CALIBRATED) for mode in ("full", "lora")}

    def unlearn(self, session: Session) -> Unlearned:
        model = session.lm.model
        vectors = control_vectors(session.lm, session.prompts, [t.name for t in session.targets], session.params.repe_reader,
                                  [t.kind for t in session.targets])
        layers = decoder_layers(model)
        alpha = session.params.alpha
        low, high = session.params.repe_layers or (len(layers) // 3, 2 * len(layers) // 3)
        if not 0 <= low < high <= len(layers):
            raise RwkuError(f"repe_layers={low}-{high}: the model has {len(layers)} layers; pick a window inside 0-{len(layers)}")
        device = next(model.parameters()).device
        hooks = [layers[i].register_forward_hook(add_to_output(alpha * vectors[i].to(device)))
                 for i in range(low, high)]
        return Unlearned(model=model, hooks=hooks, log={"alpha": alpha, "layers": [low, high], "reader": session.params.repe_reader,
                                                        "vector_norms": [float(v.norm()) for v in vectors]})
