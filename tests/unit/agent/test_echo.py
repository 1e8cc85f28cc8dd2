"""The fake engine's deterministic output."""

from __future__ import annotations

import pytest

from agent.engines import echo


def test_chat_echoes_the_last_user_message_cycled_to_max_tokens():
    prompt, source = echo.chat_words([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello world"},
    ])
    assert prompt == ["be", "brief", "hello", "world"] and source == ["hello", "world"]
    assert "".join(echo.completion_tokens(source, 5)) == "hello world hello world hello"


def test_content_parts_and_empty_prompts():
    _, source = echo.chat_words([{"role": "user", "content": [{"type": "text", "text": "a b"},
                                                              {"type": "image_url", "image_url": {"url": "x"}}]}])
    assert source == ["a", "b"]
    assert echo.completion_tokens([], 2) == ["echo", " echo"]


def test_max_tokens_default_and_validation():
    assert echo.max_tokens_of({}, 1) == echo.DEFAULT_MAX_TOKENS
    assert echo.max_tokens_of({"max_completion_tokens": 3, "max_tokens": 9}, 1) == 3
    for bad in (0, -1, True, "3", 1.5):
        with pytest.raises(echo.BadRequest):
            echo.max_tokens_of({"max_tokens": bad}, 1)
    with pytest.raises(echo.BadRequest, match="maximum context length"):
        echo.max_tokens_of({"max_tokens": echo.MAX_CONTEXT_TOKENS}, 1)


@pytest.mark.parametrize("messages", [None, [], "hi", [{"content": "x"}], [{"role": "user", "content": 3}]])
def test_malformed_messages_are_bad_requests(messages):
    with pytest.raises(echo.BadRequest):
        echo.chat_words(messages)


def test_embeddings_are_deterministic_unit_vectors():
    a, b = echo.embedding_vector("same"), echo.embedding_vector("same")
    assert a == b and len(a) == echo.EMBEDDING_DIM
    assert abs(sum(x * x for x in a) - 1.0) < 1e-5
    assert echo.embedding_vector("other") != a
    assert echo.embedding_inputs(["a b", [1, 2, 3]]) == [("a b", 2), ("1 2 3", 3)]
    with pytest.raises(echo.BadRequest):
        echo.embedding_inputs([{"x": 1}])
