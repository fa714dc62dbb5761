"""Representation engineering (RepE): steer the residual stream from "expert" towards "novice" about the target.

Reading: for each stimulus question about the target, the last-token hidden state of every decoder layer is
taken under a system prompt that makes the model an expert on the target and under one that makes it a novice;
the control vector of layer l is v_l = mean(novice_l) − mean(expert_l). Steering: a forward hook adds α · v_l to
the output of each steered layer at every position (α ∈ {0.5, 1, 1.5} in the paper). No weight changes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from rwku.corpus.build import render_with_system
from rwku.methods.base import Method, Session, Unlearned

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


def decoder_layers(model: Any) -> Any:
    """The list of decoder blocks of a transformers causal LM (``model.model.layers`` for Llama-style ones)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.layers


@torch.no_grad()
def last_token_states(model: Any, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    """Hidden state of the last prompt token after every decoder layer: [prompts, layers, hidden]."""
    states = []
    device = next(model.parameters()).device
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True)["input_ids"].to(device)
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states  # embeddings + one per layer
        states.append(torch.stack([h[0, -1].float() for h in hidden[1:]]))
    return torch.stack(states)


def control_vectors(model: Any, tokenizer: Any, targets: list[str], style: str = "chat") -> torch.Tensor:
    """v_l = mean novice state − mean expert state, per layer: [layers, hidden]."""
    expert, novice = [], []
    for target in targets:
        for stimulus in STIMULI:
            user = stimulus.format(target=target)
            expert.append(render_with_system(tokenizer, EXPERT_SYSTEM.format(target=target), user, style))
            novice.append(render_with_system(tokenizer, NOVICE_SYSTEM.format(target=target), user, style))
    return last_token_states(model, tokenizer, novice).mean(0) - last_token_states(model, tokenizer, expert).mean(0)


def add_to_output(vector: torch.Tensor):
    """A forward hook adding ``vector`` to a decoder layer's hidden-state output (tensor or tuple)."""

    def hook(module: Any, inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0] + vector.to(output[0].dtype),) + output[1:]
        return output + vector.to(output.dtype)

    return hook


class RepresentationEngineering(Method):
    name: ClassVar[str] = "repe"
    description: ClassVar[str] = "representation engineering: add α·(novice − expert) to the residual stream"
    trains: ClassVar[bool] = False

    def unlearn(self, session: Session) -> Unlearned:
        model, tokenizer = session.lm.model, session.lm.tokenizer
        vectors = control_vectors(model, tokenizer, [t.name for t in session.targets])
        layers = decoder_layers(model)
        low, high = session.config.repe_layers or (len(layers) // 3, 2 * len(layers) // 3)
        device = next(model.parameters()).device
        hooks = [layers[i].register_forward_hook(add_to_output(session.config.alpha * vectors[i].to(device)))
                 for i in range(low, high)]
        return Unlearned(model=model, hooks=hooks, log={"alpha": session.config.alpha, "layers": [low, high],
                                                        "vector_norms": [float(v.norm()) for v in vectors]})
