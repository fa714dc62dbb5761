"""Shared fixtures: one torch thread, a tiny random Llama with a tokenizer built here, the shared RWKU data, and the\ncommand line run in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHARED_DATA_REASON = "set RWKU_SHARED_DATA to ../shared/rwku-data to run loader tests on the real RWKU data"


def shared_data_root() -> Path | None:
    value = os.environ.get("RWKU_SHARED_DATA")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared RWKU data folder (``$RWKU_SHARED_DATA``); tests using it are skipped when it is unset."""
    root = shared_data_root()
    if root is None:
        pytest.skip(SHARED_DATA_REASON)
    if not root.is_dir():
        pytest.fail(f"RWKU_SHARED_DATA={root} is not a folder")
    return root


def build_tiny_tokenizer(chat_template: str | None = CHATML):
    """A byte-level BPE tokenizer trained here on a few sentences (any text encodes; no download)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "Please complete the blank in the following question.", "Please briefly answer the following question.",
        "Question: Who wrote the book? Answer: The author wrote it.", "Stephen King is an American author.",
        "Isaac Newton was an English physicist and mathematician.", "The answer is True. So the answer is False.",
    ] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, unk_token="<|endoftext|>", eos_token="<|im_end|>",
        pad_token="<|im_end|>", bos_token="<|im_start|>",
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_model(vocab_size: int, seed: int = 0):
    """A 2-layer Llama with random weights (fp32), small enough to run in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True,
        initializer_range=0.5,  # large random weights: outputs that vary with the input, not one repeated token
    )
    model = LlamaForCausalLM(config)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model folder (config, safetensors, tokenizer with chat template)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """The tiny model loaded the way rwku loads any local model."""
    from rwku.models.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the ``rwku`` command line in this process: ``cli("eval", "--data", ...) -> (exit code, stdout, stderr)``."""
    from rwku.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["rwku", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def tiny_plain_model_dir(tmp_path_factory) -> Path:
    """The tiny model saved with a tokenizer that has NO chat template (a base model: ``--prompt-format plain``)."""
    folder = tmp_path_factory.mktemp("tiny-llama-plain")
    tokenizer = build_tiny_tokenizer(chat_template=None)
    model = build_tiny_model(len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def fresh(model_dir):
    """A new copy of the tiny model in ``model_dir``, loaded as rwku loads any local model (for a test that trains it:
    the session-wide :func:`tiny_lm` must stay as it is)."""
    from rwku.models.loading import load_model

    return load_model(str(model_dir), device="cpu", dtype="float32")


def batch_of(lm, texts, max_length: int = 64):
    """``texts`` as one padded training batch on the CPU, every token counted in the loss."""
    from rwku.methods.base import text_example
    from rwku.methods.training import collate

    return collate([text_example(lm.tokenizer, text, max_length) for text in texts], lm.tokenizer.pad_token_id, "cpu")


#: Training settings small enough for the tiny model (preset ``none``; any of them can be overridden per call).
TINY_TRAIN = {"lr": 1e-2, "batch_size": 2, "grad_accum": 1, "epochs": 2, "warmup_steps": 0, "max_length": 64}


def make_session(lm, corpus, mode=None, method: str = "ga", prompt_format: str = "chat", **overrides):
    """A :class:`rwku.methods.base.Session` for ``method`` on ``lm`` and ``corpus``, built as
    ``rwku.unlearn.unlearn_unit`` builds one: preset ``none`` plus :data:`TINY_TRAIN` and ``overrides``, demo target 1,
    the given :class:`~rwku.methods.config.ModeConfig` (full fine-tuning by default) and prompt format, no progress
    display."""
    from rwku.data import RwkuData
    from rwku.evaluation.context import no_progress
    from rwku.methods import METHODS
    from rwku.methods.base import Session
    from rwku.methods.config import ModeConfig, resolve_settings
    from rwku.models.prompting import PromptFormat

    mode = mode or ModeConfig(mode="full")
    settings = resolve_settings(METHODS[method], mode.mode, "single", "none", {**TINY_TRAIN, **overrides})
    target = RwkuData.open(["demo"]).select("1")[0]
    return Session(lm=lm, targets=[target], corpus=corpus, params=settings.params, mode=mode,
                   prompts=PromptFormat(lm.tokenizer, style=prompt_format), progress=no_progress, train=settings.train)
