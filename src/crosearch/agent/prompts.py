"""Prompt templates of the search agent (Search-R1 protocol), loaded from ``crosearch/prompts/*.txt``.

Templates are plain text with ``{question}`` and ``{language}`` fields (``str.format``
syntax: write literal braces as ``{{`` and ``}}``), so they can be edited or replaced
by a user file without touching code.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from crosearch.crosslingual.languages import language_name
from crosearch.errors import ConfigError, CrosearchError

BUILTIN_TEMPLATES = ("base", "chat")
TEMPLATE_FIELDS = frozenset({"question", "language", "lang"})


def read_prompt_file(name: str) -> str:
    """Text of a bundled prompt file (``crosearch/prompts/<name>.txt``)."""
    try:
        return resources.files("crosearch").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no bundled prompt file '{name}.txt'") from None


def _check_fields(text: str, source: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"prompt template {source}: {exc} (write literal braces as '{{{{' and '}}}}')") from None
    unknown = sorted(fields - TEMPLATE_FIELDS)
    if unknown:
        raise ConfigError(f"prompt template {source}: unknown field(s) {unknown}; allowed: {sorted(TEMPLATE_FIELDS)}")
    if "question" not in fields:
        raise ConfigError(f"prompt template {source}: it must contain the {{question}} field")


@lru_cache(maxsize=32)
def load_template(template: str) -> str:
    """A built-in template by name ('base', 'chat') or a user template file by path."""
    if template in BUILTIN_TEMPLATES:
        text, source = read_prompt_file(template), f"'{template}'"
    else:
        path = Path(template)
        if not path.is_file():
            raise ConfigError(
                f"agent.template: '{template}' is neither a built-in template "
                f"({', '.join(BUILTIN_TEMPLATES)}) nor an existing file"
            )
        text, source = path.read_text(encoding="utf-8"), str(path)
    _check_fields(text, source)
    return text


@dataclass(frozen=True, slots=True)
class PromptBuilder:
    """Turns a question into the prompt the policy starts from.

    ``use_chat_template`` wraps the filled template as one user message in the
    tokenizer's chat template (with the generation prompt), for instruct models.
    """

    template: str = "base"
    use_chat_template: bool | None = None

    @classmethod
    def from_config(cls, agent: Any) -> PromptBuilder:
        """Build from an :class:`crosearch.config.AgentConfig`."""
        return cls(template=agent.template, use_chat_template=agent.use_chat_template)

    @property
    def chat(self) -> bool:
        return self.template == "chat" if self.use_chat_template is None else self.use_chat_template

    def text(self, question: str, lang: str) -> str:
        """The filled template (before any chat wrapping)."""
        return load_template(self.template).format(question=question.strip(), language=language_name(lang), lang=lang)

    def render(self, tokenizer: Any, question: str, lang: str) -> str:
        """The full prompt string the model sees (chat-wrapped when configured)."""
        text = self.text(question, lang)
        if not self.chat:
            return text
        if not getattr(tokenizer, "chat_template", None):
            raise CrosearchError(
                "agent.template 'chat' needs a tokenizer with a chat template; "
                "this model has none (use agent.template=base for base models)"
            )
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )

    def encode(self, tokenizer: Any, question: str, lang: str) -> list[int]:
        """Prompt token ids. Plain prompts get the tokenizer's special tokens (BOS); a chat
        template already writes them, so they are not added twice."""
        rendered = self.render(tokenizer, question, lang)
        return list(tokenizer(rendered, add_special_tokens=not self.chat)["input_ids"])
