"""POST /v1/completions (legacy text completion) with the OpenAI SDK: whole and streamed, several prompts,
`n`, `echo`, `stop`, usage, and its bad inputs."""

from __future__ import annotations

import openai
import pytest

from tests.support.models import CHAT_MODEL

pytestmark = pytest.mark.e2e
PROMPT = "The capital of France is"


def test_a_raw_prompt_is_continued(client):
    r = client.completions.create(model=CHAT_MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    choice = r.choices[0]
    assert choice.text and choice.finish_reason in ("stop", "length") and choice.index == 0
    assert r.usage.prompt_tokens >= 5 and r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_several_prompts_with_n_choices_are_numbered_in_order_and_echo_puts_the_prompt_first(client):
    prompts = [PROMPT, "One, two, three,"]
    r = client.completions.create(model=CHAT_MODEL, prompt=prompts, n=2, max_tokens=4, echo=True, seed=3)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for choice in r.choices:
        assert choice.text.startswith(prompts[choice.index // 2])


def test_streamed_text_matches_the_whole_answer(client):
    whole = client.completions.create(model=CHAT_MODEL, prompt=PROMPT, max_tokens=10, temperature=0).choices[0]
    chunks = list(client.completions.create(model=CHAT_MODEL, prompt=PROMPT, max_tokens=10, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.text
    assert chunks[-1].usage.completion_tokens > 0


def test_stop_strings_cut_the_text(client):
    r = client.completions.create(model=CHAT_MODEL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=["7"])
    assert "7" not in r.choices[0].text


@pytest.mark.parametrize("extra, param", [({"prompt": []}, "prompt"), ({"prompt": [1, 2, 3]}, "prompt[0]"),
                                          ({"prompt": PROMPT, "logprobs": 9}, "logprobs"),
                                          ({"prompt": PROMPT, "logprobs": 2}, "logprobs")])
def test_bad_completion_requests_are_400(client, extra, param):
    with pytest.raises(openai.BadRequestError) as err:  # logprobs 2: the transformers engine has none
        client.completions.create(model=CHAT_MODEL, max_tokens=2, **extra)
    assert err.value.body["param"] == param
