"""Methods move the model the way their definition says, not just "somewhere": DPO raises the preference margin of
chosen (counterfactual) over rejected (factual) text, RepE moves the representation from expert towards novice.
Each direction test has a twin that swaps or negates the ingredient in question and asserts the opposite movement,
so a swapped or sign-flipped implementation fails the direction test. Also: every method runs with
``--prompt-format plain`` on a model without a chat template, and ``chat`` on that model is a one-line error."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fresh, make_session

from rwku.corpus.build import Corpus
from rwku.data import RwkuData
from rwku.errors import RwkuError
from rwku.methods import METHODS
from rwku.methods.base import chat_example
from rwku.methods.config import ModeConfig
from rwku.methods.dpo import DirectPreference, PairExample
from rwku.methods.repe import EXPERT_SYSTEM, NOVICE_SYSTEM, STIMULI, control_vectors, decoder_layers
from rwku.methods.training import collate, sequence_logprob
from rwku.models.prompting import PromptFormat


# ------------------------------------------------------------------ DPO: the preference margin moves towards chosen

PAIR_PROMPT = "Please write a short biography of Isaac Newton."
CHOSEN = ["Isaac Newton was an American author.", "Isaac Newton was a French painter who never studied physics."]
REJECTED = ["Isaac Newton was an English physicist and mathematician.", "Isaac Newton wrote the book on physics."]


def preference_margin(lm, model) -> float:
    """Mean over the pairs of log π(chosen | prompt) − log π(rejected | prompt), response tokens only.

    Built from the constants above, not from the method's examples, so patching the method cannot bend the ruler.
    """
    fmt, pad = PromptFormat(lm.tokenizer), lm.tokenizer.pad_token_id
    chosen = collate([chat_example(fmt, PAIR_PROMPT, text, 64) for text in CHOSEN], pad, "cpu")
    rejected = collate([chat_example(fmt, PAIR_PROMPT, text, 64) for text in REJECTED], pad, "cpu")
    with torch.no_grad():
        return float((sequence_logprob(model, chosen) - sequence_logprob(model, rejected)).mean())


def dpo_margins(model_dir, mode: str) -> tuple[float, float]:
    """The policy's preference margin before and after a few large DPO steps (seeded as ``apply_method`` seeds)."""
    lm = fresh(model_dir)
    corpus = Corpus(targets=["Isaac Newton"], forget=list(REJECTED), counterfactual=list(CHOSEN),
                    pair_prompts=[PAIR_PROMPT] * len(CHOSEN))
    before = preference_margin(lm, lm.model)
    torch.manual_seed(42)
    unlearned = METHODS["dpo"]().unlearn(make_session(lm, corpus, ModeConfig(mode=mode), "dpo", lr=1e-2, epochs=2))
    assert len(unlearned.log["steps"]) == 2  # 2 pairs / batch 2 × 2 epochs
    return before, preference_margin(lm, unlearned.model)


@pytest.mark.parametrize("mode", ["lora", "full"])  # the reference is the adapter switched off / a frozen copy
def test_dpo_raises_the_margin_of_chosen_over_rejected(tiny_model_dir, mode):
    before, after = dpo_margins(tiny_model_dir, mode)
    assert after > before + 1.0, (before, after)  # measured: lora -42.7 -> -26.4, full -42.7 -> 21.1


def swap_corpus_pairs(monkeypatch):
    monkeypatch.setattr(Corpus, "pairs", lambda self: list(zip(self.pair_prompts, self.forget, self.counterfactual)))


def swap_method_examples(monkeypatch):
    original = DirectPreference.examples
    monkeypatch.setattr(DirectPreference, "examples",
                        lambda self, session: [PairExample(p.rejected, p.chosen) for p in original(self, session)])


@pytest.mark.parametrize("swap", [swap_corpus_pairs, swap_method_examples], ids=["Corpus.pairs", "DPO.examples"])
@pytest.mark.parametrize("mode", ["lora", "full"])
def test_dpo_with_chosen_and_rejected_swapped_lowers_the_margin(tiny_model_dir, monkeypatch, mode, swap):
    """The twin of the test above: the same run with chosen and rejected swapped moves the margin the other way,
    so a DPO that trained on swapped pairs would fail ``test_dpo_raises_the_margin_of_chosen_over_rejected``."""
    swap(monkeypatch)
    before, after = dpo_margins(tiny_model_dir, mode)
    assert after < before - 1.0, (before, after)  # measured: lora -42.7 -> -56.4, full -42.7 -> -95.8


# ------------------------------------------------------------------ RepE: the residual stream moves from expert towards novice

TARGET = "Isaac Newton"


def stimuli(fmt: PromptFormat, system: str) -> list[str]:
    """RepE's stimulus prompts under one system prompt, rendered as ``control_vectors`` renders them."""
    return [fmt.render(s.format(target=TARGET), system=system.format(target=TARGET)) for s in STIMULI]


@torch.no_grad()
def layer_outputs(lm, prompts: list[str]) -> torch.Tensor:
    """Last-token output of every decoder layer, [prompts, layers, hidden], read by forward hooks registered now.

    Our hooks run after any hook already on the layer (RepE's steering), so they see the steered output. The
    model's ``output_hidden_states`` cannot be used for this: transformers 5 records hidden states with its own
    hooks, installed on first use, so whether they see the steering depends on which was installed first.
    """
    layers, caught = decoder_layers(lm.model), {}

    def catch(index):
        def hook(module, inputs, output):
            caught[index] = (output[0] if isinstance(output, tuple) else output)[0, -1].clone()
        return hook

    handles = [layer.register_forward_hook(catch(i)) for i, layer in enumerate(layers)]
    try:
        states = []
        for prompt in prompts:
            lm.model(input_ids=lm.tokenizer(prompt, return_tensors="pt")["input_ids"])
            states.append(torch.stack([caught[i] for i in range(len(layers))]))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(states)


def repe_states(model_dir) -> dict[str, torch.Tensor]:
    """Expert and novice stimulus states of the plain model, the expert states once RepE steers (α = 1, the
    default window: layer 0 of 2), and the method's own control vectors."""
    lm = fresh(model_dir)
    fmt = PromptFormat(lm.tokenizer)
    expert, novice = layer_outputs(lm, stimuli(fmt, EXPERT_SYSTEM)), layer_outputs(lm, stimuli(fmt, NOVICE_SYSTEM))
    vectors = control_vectors(lm, fmt, [TARGET])  # before any patch: the method's own vectors
    unlearned = METHODS["repe"]().unlearn(make_session(lm, Corpus(targets=[TARGET]), method="repe", alpha=1.0))
    assert unlearned.log["layers"] == [0, 1]
    try:
        steered = layer_outputs(lm, stimuli(fmt, EXPERT_SYSTEM))
    finally:
        unlearned.close()
    return {"expert": expert[:, 0], "novice": novice[:, 0], "steered": steered[:, 0], "vector": vectors[0]}


def test_repe_moves_expert_states_towards_novice(tiny_model_dir):
    """Measured at the output of the steered layer (layer 0), where the hook's vector shows up as is: later layers
    of a random 2-layer model transform it non-linearly, and the last layer's recorded state is after the final
    norm, so a projection there says more about the random weights than about the steering. At layer 0 the
    direction novice − expert is measured here from our own readings of the unsteered model, independently of
    ``control_vectors``; the expert prompts' projections onto it must rise, by exactly α·|v|², and with α = 1 the
    steered expert states' mean lands on the novice mean."""
    s = repe_states(tiny_model_dir)
    direction = s["novice"].mean(0) - s["expert"].mean(0)
    assert torch.allclose(s["vector"], direction, atol=1e-4)  # v_0 is read where it is added (layer index aligned)
    plain, steered = s["expert"] @ direction, s["steered"] @ direction
    assert bool((steered > plain).all()), (plain, steered)
    assert torch.allclose(steered - plain, torch.full_like(plain, float(direction @ direction)), rtol=1e-4)
    assert torch.allclose(s["steered"].mean(0), s["novice"].mean(0), atol=1e-3)


def negate_control_vectors(monkeypatch):
    import rwku.methods.repe as repe

    original = repe.control_vectors
    monkeypatch.setattr(repe, "control_vectors", lambda *args, **kwargs: -original(*args, **kwargs))


def hook_subtracts(monkeypatch):
    import rwku.methods.repe as repe

    original = repe.add_to_output
    monkeypatch.setattr(repe, "add_to_output", lambda vector: original(-vector))


@pytest.mark.parametrize("flip", [negate_control_vectors, hook_subtracts], ids=["expert-minus-novice", "hook-subtracts"])
def test_repe_with_the_sign_flipped_moves_expert_states_away_from_novice(tiny_model_dir, monkeypatch, flip):
    """The twin of the test above: v = expert − novice, or a hook that subtracts, pushes the expert states further
    from the novice side, so either mistake fails ``test_repe_moves_expert_states_towards_novice``."""
    flip(monkeypatch)
    s = repe_states(tiny_model_dir)
    direction = s["novice"].mean(0) - s["expert"].mean(0)
    plain, steered = s["expert"] @ direction, s["steered"] @ direction
    assert bool((steered < plain).all()), (plain, steered)


# ------------------------------------------------------------------ every method with --prompt-format plain on a base model

PLAIN_OVERRIDES = {"corpus_size": "2", "question_count": "2", "corpus_max_new_tokens": "4", "epochs": "1",
                   "batch_size": "2", "grad_accum": "1", "warmup_steps": "0", "lr": "1e-3", "max_length": "32"}


def plain_job(model_dir, methods, prompt_format, out):
    from rwku.evaluation.settings import RunSettings
    from rwku.unlearn import UnlearnJob

    data = RwkuData.open(["demo"])
    run = RunSettings(model=str(model_dir), sets=("forget",), limit=1, prompt_format=prompt_format, device="cpu", dtype="float32")
    return UnlearnJob(run=run, data=data, targets=data.select("1"), methods=list(methods), mode=ModeConfig(mode="lora"),
                      preset="none", overrides=dict(PLAIN_OVERRIDES), out=out)


def quiet(*args):
    pass


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_with_the_plain_format_on_a_model_without_chat_template(tiny_plain_model_dir, tmp_path,
                                                                                 monkeypatch, method):
    """A real ``rwku unlearn`` (corpus generation, training or steering, evaluation) of each method on a model whose
    tokenizer has no chat template: any prompt a method renders as chat (DPO's pairs, RT's questions, RepE's
    stimuli once did) raises, so the unit summary exists only if every prompt followed ``--prompt-format plain``."""
    from rwku.unlearn import run_unlearn

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    job = plain_job(tiny_plain_model_dir, [method], "plain", out)
    rows = run_unlearn(job)[1]["rows"]
    run = job.run_name(method)
    assert set(rows) == {"before", run}
    summary = json.loads((out / run / "1_Isaac_Newton" / "summary.json").read_text())
    assert summary["config"]["prompt_format"] == "plain" and summary["n_items"]["forget"] == 3
    items = json.loads((out / run / "1_Isaac_Newton" / "items.json").read_text())
    assert items["forget"] and not any("<|im_start|>" in item["prompt"] for item in items["forget"])


def test_the_chat_format_on_a_model_without_chat_template_is_a_one_line_error(tiny_plain_model_dir, tmp_path,
                                                                               monkeypatch):
    from rwku.unlearn import run_unlearn

    monkeypatch.setenv("RWKU_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RwkuError, match="no chat template") as error:
        run_unlearn(plain_job(tiny_plain_model_dir, list(METHODS), "chat", tmp_path / "run"))
    assert "\n" not in str(error.value) and "--prompt-format plain" in str(error.value)
    assert not list((tmp_path / "run").rglob("summary.json"))


@pytest.mark.parametrize("method", ["dpo", "rt", "repe"])
def test_plain_format_renders_no_chat_prompt_even_when_the_model_has_a_template(tiny_model_dir, monkeypatch, method):
    """With a template present, ``plain`` must still be plain: the three methods that render prompts of their own
    never reach the chat template (a method that picked chat whenever a template exists would pass the test on the
    template-less model above, and fail here)."""
    from transformers import PreTrainedTokenizerBase

    corpus = Corpus(targets=[TARGET], forget=list(REJECTED), counterfactual=list(CHOSEN), pair_prompts=[PAIR_PROMPT] * 2,
                    questions=["Who is Isaac Newton?", "Where was Isaac Newton born?"], refusals=["I don't know."] * 2)
    session = make_session(fresh(tiny_model_dir), corpus, ModeConfig(mode="lora"), method, prompt_format="plain", epochs=1)

    def no_template(*args, **kwargs):
        raise AssertionError("a chat template was applied under --prompt-format plain")

    monkeypatch.setattr(PreTrainedTokenizerBase, "apply_chat_template", no_template)
    unlearned = METHODS[method]().unlearn(session)
    unlearned.close()
    if method == "repe":
        assert unlearned.log["vector_norms"][0] > 0
    else:
        assert len(unlearned.log["steps"]) == 1


def test_control_vectors_are_read_where_steering_adds_them(tiny_lm):
    """Every layer's vector, the last included, is read at that layer's output (before the final norm), where the
    steering hook adds it: ``output_hidden_states`` gives the last layer after the norm, on another scale."""
    from rwku.methods.repe import decoder_layers
    from rwku.models.backends import make_backend

    prompts = ["Who is Isaac Newton?", "Where was Newton born?"]
    states = make_backend(tiny_lm).layer_states([tiny_lm.tokenizer(p)["input_ids"] for p in prompts], decoder_layers(tiny_lm.model))
    outputs = []
    hook = decoder_layers(tiny_lm.model)[-1].register_forward_hook(lambda m, i, o: outputs.append((o[0] if isinstance(o, tuple) else o)[0, -1]))
    try:
        for prompt in prompts:
            tiny_lm.model(input_ids=tiny_lm.tokenizer(prompt, return_tensors="pt")["input_ids"])
    finally:
        hook.remove()
    assert torch.allclose(states[:, -1], torch.stack(outputs), atol=1e-6)
