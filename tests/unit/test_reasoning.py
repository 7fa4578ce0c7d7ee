"""Reasoning parsers on canned model outputs, whole and split into stream pieces at every position."""

from __future__ import annotations

import pytest

from serve_app.gateway.reasoning import ReasoningSplitter, split_reasoning

QWEN3 = "<think>\nThe user asks for 2+2. That is 4.\n</think>\n\nThe answer is 4."
R1 = "The user asks for 2+2. That is 4.\n</think>\n\nThe answer is 4."


def test_whole_answers_are_split():
    assert split_reasoning(QWEN3, "qwen3") == ("The user asks for 2+2. That is 4.", "The answer is 4.")
    assert split_reasoning(R1, "deepseek_r1") == ("The user asks for 2+2. That is 4.", "The answer is 4.")
    assert split_reasoning("The answer is 4.", "qwen3") == (None, "The answer is 4.")  # thinking switched off
    assert split_reasoning(QWEN3, None) == (None, QWEN3)


def test_an_answer_cut_off_while_thinking_is_all_reasoning():
    reasoning, content = split_reasoning("<think>\nLet me count: 1, 2,", "qwen3")
    assert reasoning == "Let me count: 1, 2," and content == ""


@pytest.mark.parametrize("parser, text", [("qwen3", QWEN3), ("deepseek_r1", R1)])
def test_streamed_pieces_split_anywhere_give_the_same_result(parser, text):
    for cut in range(1, len(text)):
        for step in (1, 3, cut):
            splitter = ReasoningSplitter(parser)
            pieces = []
            for at in range(0, len(text), step):
                pieces += splitter.feed(text[at:at + step])
            pieces += splitter.flush()
            reasoning = "".join(p for kind, p in pieces if kind == "reasoning")
            content = "".join(p for kind, p in pieces if kind == "content")
            assert reasoning.strip() == "The user asks for 2+2. That is 4."
            assert content.strip() == "The answer is 4."
            assert "<think>" not in reasoning + content and "</think>" not in reasoning + content
