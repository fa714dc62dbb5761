"""Turn a user turn into the exact prompt string the official protocol feeds the model, and tokenise it.

The one place where prompts are rendered: evaluation probes, corpus generation, the methods' training
examples and RepE's stimuli all go through :meth:`PromptFormat.render`.

The official code renders one user message with the tokenizer's chat template (generation prompt added), then
appends a literal prefill such as ``Answer:``, then tokenises the whole string with the tokenizer's default
special tokens (so Llama-3 gets a second BOS). Models without a chat template can use a plain format instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rwku.errors import RwkuError

PROMPT_STYLES = ("chat", "plain")


def check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise RwkuError(f"--prompt-format {style}: choose chat or plain")


@dataclass
class PromptFormat:
    """How user turns become model input for one tokenizer.

    ``preamble`` (with ``{}`` for the target name) is prepended to every user turn: in-context unlearning.
    ``style`` is ``chat`` (the tokenizer's template) or ``plain`` (the user text as is, for base models).
    ``single_bos`` is the named fix that stops a second BOS being added after a template's own.
    """

    tokenizer: Any
    style: str = "chat"
    preamble: str | None = None
    single_bos: bool = False

    def __post_init__(self) -> None:
        check_style(self.style)
        if self.style == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise RwkuError(
                f"model tokenizer {getattr(self.tokenizer, 'name_or_path', '')!r} has no chat template; "
                "pass --prompt-format plain to prompt it without one"
            )

    def user_text(self, text: str, subject: str) -> str:
        """The user message with the preamble (if any) for ``subject`` in front."""
        return self.preamble.format(subject) + text if self.preamble else text

    def render(self, text: str, subject: str = "", system: str | None = None) -> str:
        """The prompt string up to where the assistant's answer starts (before any prefill).

        ``system`` adds a system turn (corpus generation, RepE); a template that refuses a system role gets it
        folded into the user turn, and the plain format puts it first, separated by a blank line.
        """
        content = self.user_text(text, subject)
        if self.style == "plain":
            return content if system is None else f"{system}\n\n{content}\n"
        user = [{"role": "user", "content": content}]
        if system is None:
            return self.chat(user)
        try:
            return self.chat([{"role": "system", "content": system}, *user])
        except Exception:  # jinja raises for "system role not supported"; fold it into the user turn
            return self.chat([{"role": "user", "content": f"{system}\n\n{content}"}])

    def chat(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def raw_text(self, text: str, subject: str = "") -> str:
        """A raw (no template) text, as MIA scores it: the preamble is still prepended, as officially."""
        return self.user_text(text, subject)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt, with the tokenizer's default special tokens (as officially)."""
        add_special = True
        if self.single_bos and self.style == "chat":
            bos = getattr(self.tokenizer, "bos_token", None)
            add_special = not (bos and prompt.startswith(bos))
        return list(self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"])


def after_colon_prefill(prompt: str, prefill: str) -> str:
    """BBH/TruthfulQA rule: append ``A:`` directly after a newline or space, else after a space."""
    return prompt + (prefill if prompt[-1:] in ("\n", " ") else " " + prefill)
