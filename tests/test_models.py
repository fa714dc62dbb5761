"""Model layer on a tiny random Llama: loading, prompting, greedy generation and scoring vs. plain references."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_tokenizer

from rwku.errors import RwkuError
from rwku.models.decoding.generate import decode_continuation, generate_tokens
from rwku.models.decoding.prefill import common_prefix_length, prefix_sorted_batches
from rwku.models.loading import load_model
from rwku.models.prompting import PromptFormat, after_colon_prefill
from rwku.models.scoring import next_token_probs, score_tokens

SHARED = "Stephen King is an American author. Isaac Newton was an English physicist and mathematician. "
PROMPTS = [  # three share a long prefix (computed once per batch), two do not
    "Please briefly answer the following question.\nQuestion: Who wrote the book?\n",
    SHARED + "Who?",
    SHARED + "Which of the two wrote the book? Answer briefly.",
    "Hi",
    SHARED + "Who",
    "Please complete the blank in the following question.\nQuestion: ___ wrote it.\n",
]


def encoded_prompts(lm):
    fmt = PromptFormat(lm.tokenizer)
    return [fmt.encode(fmt.render(p) + "Answer:") for p in PROMPTS]


def hf_greedy(lm, prompt, max_new_tokens, stop_ids):
    """Reference: transformers' own greedy generate on one unpadded prompt."""
    ids = torch.tensor([prompt])
    out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, eos_token_id=stop_ids, pad_token_id=lm.tokenizer.pad_token_id)
    tokens = out[0, len(prompt):].tolist()
    for i, t in enumerate(tokens):
        if t in stop_ids:
            return tokens[:i]
    return tokens


def test_greedy_generation_matches_transformers_at_every_batch_size(tiny_lm):
    prompts = encoded_prompts(tiny_lm)
    # stop on a token one row emits mid-way, so rows finish at different steps and leave the batch early
    free = [hf_greedy(tiny_lm, p, 12, [tiny_lm.tokenizer.eos_token_id]) for p in prompts]
    stop_ids = [tiny_lm.tokenizer.eos_token_id, free[0][4]]
    expected = [hf_greedy(tiny_lm, p, 12, stop_ids) for p in prompts]
    assert len({len(e) for e in expected}) > 1
    for batch_size in (1, 2, 3, 6):
        got = generate_tokens(tiny_lm.model, prompts, max_new_tokens=12, stop_ids=stop_ids,
                              pad_id=tiny_lm.tokenizer.pad_token_id, batch_size=batch_size)
        assert got == expected, f"batch size {batch_size}"


def test_prefix_sorted_batches_group_rows_with_a_common_prefix():
    rows = [[5, 1, 2], [9, 9], [5, 1, 3], [1], [5, 1, 2, 7]]
    assert prefix_sorted_batches(rows, 2) == [[3, 0], [4, 2], [1]]
    unrelated = [[1, 2], [9, 8, 7, 6], [4], [5, 5, 5]]  # no shared prefixes: longest first
    assert prefix_sorted_batches(unrelated, 3) == [[1, 3, 0], [2]]
    assert common_prefix_length([[5, 1, 2], [5, 1, 3], [5, 1, 2, 7]]) == 2
    assert common_prefix_length([[5, 1], [5, 1, 3]]) == 2


def naive_logprobs(model, sequence):
    logits = model(input_ids=torch.tensor([sequence])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def test_score_tokens_matches_unbatched_forward(tiny_lm):
    sequences = encoded_prompts(tiny_lm)
    n_scored = [len(s) - 1 for s in sequences]
    n_scored[0] = 3  # a short tail, as TruthfulQA scores only the answer tokens
    scores = score_tokens(tiny_lm.model, sequences, n_scored, pad_id=tiny_lm.tokenizer.pad_token_id,
                          batch_size=3, vocab_moments=True)
    for sequence, n, got in zip(sequences, n_scored, scores):
        lp = naive_logprobs(tiny_lm.model, sequence)[:-1][-n:]
        target = torch.tensor(sequence[1:][-n:])
        expected = lp.gather(-1, target[:, None]).squeeze(-1)
        assert got.logprobs == pytest.approx(expected.tolist(), abs=1e-5)
        p = lp.exp()
        mu = (p * lp).sum(-1)
        sigma = ((p * lp.square()).sum(-1) - mu.square()).sqrt()
        assert got.mean == pytest.approx(mu.tolist(), abs=1e-5)
        assert got.std == pytest.approx(sigma.tolist(), abs=1e-5)


def test_next_token_probs_matches_unbatched_forward(tiny_lm):
    prompts = encoded_prompts(tiny_lm)
    candidates = [5, 17, 42, 100]
    got = next_token_probs(tiny_lm.model, prompts, candidates, pad_id=tiny_lm.tokenizer.pad_token_id, batch_size=4)
    for prompt, row in zip(prompts, got):
        expected = naive_logprobs(tiny_lm.model, prompt)[-1].exp()[candidates]
        assert row == pytest.approx(expected.tolist(), abs=1e-6)


def test_decode_continuation_slices_the_decoded_prompt(tiny_lm):
    tok = tiny_lm.tokenizer
    prompt = tok("Question: Who?\nAnswer:")["input_ids"]
    continuation = tok(" The author", add_special_tokens=False)["input_ids"]
    assert decode_continuation(tok, prompt, continuation) == " The author"
    assert decode_continuation(tok, prompt, []) == ""


def test_chat_prompt_renders_template_preamble_and_prefill(tiny_lm):
    fmt = PromptFormat(tiny_lm.tokenizer, preamble="Forget {}.\n")
    assert fmt.render("Q?\n", "Ada") == "<|im_start|>user\nForget Ada.\nQ?\n<|im_end|>\n<|im_start|>assistant\n"
    assert fmt.raw_text("text", "Ada") == "Forget Ada.\ntext"
    assert after_colon_prefill("x\n", "A:") == "x\nA:"
    assert after_colon_prefill("x", "A:") == "x A:"


def test_single_bos_fix_drops_the_second_bos():
    tokenizer = build_tiny_tokenizer(chat_template="{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    tokenizer._tokenizer.post_processor = None
    from tokenizers.processors import TemplateProcessing

    tokenizer._tokenizer.post_processor = TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)])
    faithful = PromptFormat(tokenizer).encode(PromptFormat(tokenizer).render("hi"))
    fixed = PromptFormat(tokenizer, single_bos=True).encode(PromptFormat(tokenizer).render("hi"))
    assert faithful[:2] == [1, 1] and fixed[0] == 1 and fixed[1] != 1


def test_missing_chat_template_is_a_clear_error_and_plain_format_works():
    tokenizer = build_tiny_tokenizer(chat_template=None)
    with pytest.raises(RwkuError, match="no chat template.*--prompt-format plain"):
        PromptFormat(tokenizer)
    assert PromptFormat(tokenizer, style="plain").render("Q?\n") == "Q?\n"


def test_load_model_from_local_folder_sets_left_padding(tiny_lm):
    assert tiny_lm.tokenizer.padding_side == "left"
    assert tiny_lm.tokenizer.pad_token is not None
    assert not tiny_lm.model.training


@pytest.mark.parametrize("spec, message", [
    ("./no/such/model", "no such file or folder"),
    ("/tmp/definitely-missing-model-folder", "no such file or folder"),
])
def test_load_model_rejects_missing_paths(spec, message):
    with pytest.raises(RwkuError, match=message):
        load_model(spec, device="cpu")


def test_load_model_rejects_a_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"not a model")
    with pytest.raises(RwkuError, match="not a .gguf"):
        load_model(str(path), device="cpu")


def test_hub_id_that_cannot_be_reached_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(RwkuError, match="cannot load it"):
        load_model("some-org/some-model-that-is-not-cached", device="cpu")


def test_shared_prefix_prefill_equals_plain_prefill(tiny_lm):
    from rwku.models.decoding.prefill import MIN_SHARED_PREFIX, prefill

    prompts = [p for p in encoded_prompts(tiny_lm) if SHARED.split()[0] in tiny_lm.tokenizer.decode(p)]
    assert len(prompts) == 3 and common_prefix_length(prompts) >= MIN_SHARED_PREFIX
    pad = tiny_lm.tokenizer.pad_token_id
    shared = prefill(tiny_lm.model, prompts, pad_id=pad, keep=2, needed_from_end=[1] * len(prompts))
    plain = prefill(tiny_lm.model, prompts, pad_id=pad, keep=2, needed_from_end=[len(p) - 1 for p in prompts])  # nothing shared
    assert shared.mask.shape[1] == plain.mask.shape[1]
    assert torch.allclose(shared.logits, plain.logits, atol=1e-5)
    assert torch.equal(shared.last_position, plain.last_position)


def test_nucleus_probs_cut_where_transformers_top_p_cuts():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    from rwku.models.decoding.choice import nucleus_probs

    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    expected = TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.7)(None, logits.clone())).softmax(-1)
    got = nucleus_probs(logits, 0.7, 0.9)
    assert torch.allclose(got, expected, atol=1e-6) and ((got > 0).sum(-1) < 50).all()
