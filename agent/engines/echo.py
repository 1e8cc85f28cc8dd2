"""The fake engine's "model": deterministic output derived from the request. Pure.

- A token is a whitespace-separated word. ``prompt_tokens`` counts the words of the whole
  prompt (every chat message's text), at least 1.
- The completion echoes the *source* words (chat: the last user message; completions: the
  prompt), cycled until exactly ``max_tokens`` tokens were produced, each token after the
  first prefixed by one space. An empty source echoes the word ``echo``.
- ``finish_reason`` is therefore always ``"length"``: output length is set by ``max_tokens``
  alone, which is what load tests want.

Example: messages ``[{"role": "user", "content": "hello world"}]``, ``max_tokens=3`` gives
``"hello world hello"`` with ``prompt_tokens=2, completion_tokens=3``.

Embeddings are unit vectors of ``EMBEDDING_DIM`` float32 derived from SHA-256 of the input text.
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from typing import Any

EMBEDDING_DIM = 32
DEFAULT_MAX_TOKENS = 16
# Prompt + completion words a request may use, like vLLM's max_model_len.
MAX_CONTEXT_TOKENS = 32768
_FALLBACK_WORD = "echo"


class BadRequest(ValueError):
    """The request is malformed: the server answers 400 with this message."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def message_text(content: Any) -> str:
    """Text of a chat message's content: a string, or a list of parts of which ``text`` parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise BadRequest("message content parts must be objects", "messages")
            if part.get("type") == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise BadRequest("a text content part needs a string 'text'", "messages")
                texts.append(text)
        return " ".join(texts)
    raise BadRequest("message content must be a string or a list of parts", "messages")


def chat_words(messages: Any) -> tuple[list[str], list[str]]:
    """(all prompt words, words of the last user message)."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", "messages")
    prompt: list[str] = []
    source: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest("each message must be an object with a string 'role'", "messages")
        words = message_text(message.get("content")).split()
        prompt.extend(words)
        if message["role"] == "user":
            source = words
    return prompt, source


def prompt_words(prompt: Any) -> list[str]:
    """Words of a /v1/completions prompt: a string or a one-element list of strings."""
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string (the fake engine serves one prompt per request)", "prompt")
    return prompt.split()


def max_tokens_of(body: dict, prompt_tokens: int) -> int:
    raw = body.get("max_completion_tokens", body.get("max_tokens"))
    if raw is None:
        value = DEFAULT_MAX_TOKENS
    elif isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise BadRequest("'max_tokens' must be a positive integer", "max_tokens")
    else:
        value = raw
    if prompt_tokens + value > MAX_CONTEXT_TOKENS:
        raise BadRequest(
            f"This model's maximum context length is {MAX_CONTEXT_TOKENS} tokens. However, you requested "
            f"{prompt_tokens + value} tokens ({prompt_tokens} in the messages, {value} in the completion).",
            "max_tokens",
        )
    return value


def completion_tokens(source: list[str], max_tokens: int) -> list[str]:
    words = source or [_FALLBACK_WORD]
    n = len(words)
    return [words[0]] + [" " + words[i % n] for i in range(1, max_tokens)] if max_tokens > 0 else []


def embedding_inputs(raw: Any) -> list[tuple[str, int]]:
    """(text, token count) per input. Accepts a string, a list of strings, token ids or lists of token ids."""
    if isinstance(raw, str):
        return [(raw, max(len(raw.split()), 1))]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
            return [(" ".join(map(str, raw)), len(raw))]
        out: list[tuple[str, int]] = []
        for item in raw:
            if isinstance(item, str):
                out.append((item, max(len(item.split()), 1)))
            elif isinstance(item, list) and item and all(isinstance(x, int) and not isinstance(x, bool) for x in item):
                out.append((" ".join(map(str, item)), len(item)))
            else:
                raise BadRequest("'input' items must be strings or lists of token ids", "input")
        return out
    raise BadRequest("'input' must be a string, a list of strings or token ids", "input")


def embedding_vector(text: str) -> array:
    """A unit float32 vector, a pure function of ``text``."""
    digest = b""
    counter = 0
    while len(digest) < EMBEDDING_DIM * 4:
        digest += hashlib.sha256(counter.to_bytes(4, "little") + text.encode("utf-8", "surrogatepass")).digest()
        counter += 1
    raw = struct.unpack(f"<{EMBEDDING_DIM}i", digest[: EMBEDDING_DIM * 4])
    values = [x / 2**31 for x in raw]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return array("f", (v / norm for v in values))
