"""vLLM's extra sampling fields, sent as the SDK sends them (`extra_body`): min_tokens, ignore_eos,
stop_token_ids, logit_bias."""

from __future__ import annotations

import openai
import pytest

from deployments import model_source
from tests.support.models import CHAT_MODEL, SMOLLM2_SOURCE

pytestmark = pytest.mark.e2e
SAY_OK = [{"role": "user", "content": "What is the capital of France?"}]  # a short answer, then the end


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_source.as_transformers_checkpoint(model_source.resolve(SMOLLM2_SOURCE)))


def ask(client, **extra):
    return client.chat.completions.create(model=CHAT_MODEL, messages=SAY_OK, temperature=0, max_tokens=30,
                                          extra_body=extra)


def test_ignore_eos_and_min_tokens_hold_the_end_back(client):
    short = ask(client)
    assert short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 20
    forced = ask(client, ignore_eos=True)
    assert forced.choices[0].finish_reason == "length" and forced.usage.completion_tokens == 30
    assert ask(client, min_tokens=25).usage.completion_tokens >= 25


def test_stop_token_ids_end_the_choice(client, tokenizer):
    first = ask(client).choices[0].message.content
    stop_id = tokenizer(first, add_special_tokens=False).input_ids[0]  # the first token it would write
    r = ask(client, stop_token_ids=[stop_id])
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 1


def test_logit_bias_steers_the_answer(client, tokenizer):
    [paris] = tokenizer(" Paris", add_special_tokens=False).input_ids
    r = client.chat.completions.create(model=CHAT_MODEL, messages=SAY_OK, temperature=0, max_tokens=3,
                                       logit_bias={str(paris): 100})
    assert r.choices[0].message.content.count("Paris") == 3


@pytest.mark.parametrize("extra, param", [({"logit_bias": {"99999999": 5}}, "logit_bias"),
                                          ({"logit_bias": {"abc": 5}}, "logit_bias"),
                                          ({"stop_token_ids": [99999999]}, "stop_token_ids"),
                                          ({"min_tokens": -1}, "min_tokens")])
def test_out_of_range_extras_are_400(client, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, **extra)
    assert err.value.body["param"] == param
