"""The model-execution seam: the default and official backends agree, every evaluation call goes through the
context's backend, the official one runs on the device it is given, and requests run under their kernel mode."""

from __future__ import annotations

import pytest
import torch

from rwku.data import RwkuData
from rwku.errors import RwkuError
from rwku.evaluation import EvalContext, evaluate_target
from rwku.evaluation.sets import load_target
from rwku.models.backends import BACKENDS, HfBackend, OfficialBackend, kernel_settings, make_backend
from rwku.models.prompting import PromptFormat
from rwku.results import flatten

SETS = ("forget", "neighbor", "mia", "utility")


@pytest.fixture(scope="module")
def demo_target():
    data = RwkuData.open(["demo"])
    return load_target(data, data.select("1")[0], SETS, 3)


def test_official_backend_gives_the_engines_outputs_and_scores(tiny_lm, demo_target):
    prompts = PromptFormat(tiny_lm.tokenizer)
    engine = evaluate_target(EvalContext(lm=tiny_lm, prompts=prompts, batch_size=5), demo_target, SETS)
    official = evaluate_target(EvalContext(lm=tiny_lm, prompts=prompts, backend=make_backend(tiny_lm, "official", device="cpu")),
                               demo_target, SETS)
    for key, value in flatten(engine.summary).items():
        if not key.startswith("seconds."):
            assert flatten(official.summary)[key] == pytest.approx(value, abs=1e-4), key
    for part in ("forget", "neighbor"):
        assert [i["output"] for i in official.items[part]] == [i["output"] for i in engine.items[part]]


class Recording(HfBackend):
    """The default backend, noting each request it answers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests: list[str] = []

    def generate(self, task, *args, **kwargs):
        self.requests.append(f"generate {task}")
        return super().generate(task, *args, **kwargs)

    def score(self, task, *args, **kwargs):
        self.requests.append(f"score {task}")
        return super().score(task, *args, **kwargs)

    def next_token_probs(self, task, *args, **kwargs):
        self.requests.append(f"next_token_probs {task}")
        return super().next_token_probs(task, *args, **kwargs)


def test_every_set_runs_the_model_through_the_contexts_backend(tiny_lm, demo_target):
    backend = Recording(tiny_lm, batch_size=4)
    evaluate_target(EvalContext(lm=tiny_lm, prompts=PromptFormat(tiny_lm.tokenizer), backend=backend), demo_target, SETS)
    assert {"generate forget probes", "generate neighbor probes", "score MIA FM", "score MIA RM",
            "next_token_probs MMLU", "generate BBH", "score TruthfulQA", "generate TriviaQA", "generate Fluency"} <= set(backend.requests)


def test_official_backend_moves_its_inputs_to_its_device(tiny_lm):
    seen = []
    hook = tiny_lm.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].device),
                                                   with_kwargs=True)
    backend = OfficialBackend(tiny_lm, device=torch.device("cpu"))
    prompt = tiny_lm.tokenizer("Who wrote the book?")["input_ids"]
    try:
        backend.generate("forget probes", [prompt, prompt[:3]], 4, [tiny_lm.tokenizer.eos_token_id])
        backend.score("MIA FM", [prompt], [len(prompt) - 1])
        backend.next_token_probs("MMLU", [prompt], [5, 6])
    finally:
        hook.remove()
    assert seen and all(device == backend.device for device in seen)
    with pytest.raises(ValueError, match="no official batch size for 'poems'"):
        backend.generate("poems", [prompt], 2, [])


def test_backends_are_registered_and_unknown_names_are_refused(tiny_lm):
    assert set(BACKENDS) == {"hf", "official", "served"} and isinstance(make_backend(tiny_lm), HfBackend)
    with pytest.raises(RwkuError, match="backend vllm: unknown; choose hf, official, served"):
        make_backend(tiny_lm, "vllm")
    with pytest.raises(RwkuError, match="is a local model; serve it"):
        make_backend(tiny_lm, "served")


def test_requests_run_under_their_kernel_mode_and_restore_it(tiny_lm):
    import dataclasses

    seen = []
    hook = tiny_lm.model.register_forward_pre_hook(lambda module, args: seen.append(torch.backends.cuda.matmul.allow_tf32))
    prompt = tiny_lm.tokenizer("Who wrote the book?")["input_ids"]
    try:
        for kernels in ("invariant", "fast"):
            make_backend(dataclasses.replace(tiny_lm, kernels=kernels)).next_token_probs("MMLU", [prompt], [5])
    finally:
        hook.remove()
    assert seen == [False, True]
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic)
    with kernel_settings("invariant"):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    with kernel_settings("fast"):
        assert torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.deterministic
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic) == before
    with pytest.raises(RwkuError, match="--kernels quick: unknown"):
        with kernel_settings("quick"):
            pass


def test_invariant_kernels_run_one_row_per_pass_or_fixed_shape_decode_passes_and_fast_ones_batch(tiny_lm):
    """Invariant: every pass holds one row (prompts, scored texts) or exactly DECODE_SLOTS decode positions."""
    import dataclasses

    from rwku.models.decoding.slots import DECODE_SLOTS

    shapes = []
    hook = tiny_lm.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    prompts = [tiny_lm.tokenizer(t)["input_ids"] for t in ("Who wrote the book?", "Stephen King is", "Isaac Newton was an")]
    try:
        for kernels in ("invariant", "fast"):
            backend = make_backend(dataclasses.replace(tiny_lm, kernels=kernels), batch_size=32)
            backend.generate("forget probes", prompts, 3, [])
            backend.score("MIA FM", prompts, [2, 2, 2])
            backend.next_token_probs("MMLU", prompts, [5])
            shapes.append(kernels)
    finally:
        hook.remove()
    split = shapes.index("invariant")
    invariant, fast = shapes[:split], shapes[split + 1:-1]
    assert {rows for rows, _ in invariant} == {1} and (1, DECODE_SLOTS) in invariant
    assert any(rows == 3 for rows, _ in fast) and (1, DECODE_SLOTS) not in fast
