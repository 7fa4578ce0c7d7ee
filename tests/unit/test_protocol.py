import pytest

from serve_app.errors import InvalidRequest
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.validation import param_path, parse_model

MSG = [{"role": "user", "content": "hi"}]


def test_accepts_openai_fields_and_vllm_extras():
    req = parse_model(ChatCompletionRequest, {
        "model": "m", "messages": MSG, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
        "repetition_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": -0.5, "max_tokens": 10,
        "stop": "x", "seed": 7, "n": 2, "stream": True, "stream_options": {"include_usage": True},
    })
    assert req.top_k == 40 and req.stop_list() == ["x"] and req.token_budget() == 10 and req.n == 2


def test_neutral_fields_that_sdk_wrappers_send_are_accepted():
    req = parse_model(ChatCompletionRequest, {"model": "m", "messages": MSG, "logprobs": False, "user": "u1",
                                              "response_format": {"type": "text"}})
    assert req.logprobs is False


def test_max_completion_tokens_wins_over_max_tokens():
    req = parse_model(ChatCompletionRequest, {"model": "m", "messages": MSG, "max_tokens": 5,
                                              "max_completion_tokens": 9})
    assert req.token_budget() == 9


@pytest.mark.parametrize("body, param, fragment", [
    ({"messages": MSG}, "model", "Missing required parameter"),
    ({"model": "m"}, "messages", "Missing required parameter"),
    ({"model": "m", "messages": []}, "messages", "Invalid value"),
    ({"model": "m", "messages": MSG, "temperature": "hot"}, "temperature", "Invalid value"),
    ({"model": "m", "messages": MSG, "temperature": 3}, "temperature", "Invalid value"),
    ({"model": "m", "messages": MSG, "n": 0}, "n", "Invalid value"),
    ({"model": "m", "messages": MSG, "bogus": 1}, "bogus", "Unrecognized request argument"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "Invalid value"),
    ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", "Missing required parameter"),
    ({"model": "m", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop", "stop must be"),
    ({"model": "m", "messages": MSG, "stop": "x" * 257}, "stop", "stop must be"),
    ({"model": "m", "messages": MSG, "stream_options": {"include_usage": True}}, "stream_options",
     "only allowed when stream is true"),
    ({"model": "m", "messages": MSG, "top_k": 2**63}, "top_k", "Invalid value"),
    ({"model": "m", "messages": MSG, "top_logprobs": 2}, "top_logprobs", "logprobs must be set to true"),
    ({"model": "m", "messages": MSG, "logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal"),
    ({"model": "m", "messages": MSG, "response_format": {"type": "yaml"}}, "response_format.type",
     "Invalid value"),
    # digits int() refuses (a superscript two, an Arabic-Indic three), past its 4,300-digit limit, past 32 bits
    *[({"model": "m", "messages": MSG, "logit_bias": {key: 1}}, "logit_bias", "token ids")
      for key in ("\u00b2", "\u0663", "9" * 5000, str(2**31))],
    # one token named twice ("5" and "05"): which bias wins would depend on the rows batched beside it
    ({"model": "m", "messages": MSG, "logit_bias": {"5": -100, "05": 100}}, "logit_bias", "token id 5 more than once"),
])
def test_bad_chat_bodies_name_the_param(body, param, fragment):
    with pytest.raises(InvalidRequest) as err:
        parse_model(ChatCompletionRequest, body)
    assert err.value.param == param
    assert fragment in err.value.message
    assert err.value.status_code == 400


def test_fields_the_sdks_send_at_their_no_op_values_are_accepted():
    sent = {"service_tier": "auto", "prompt_cache_key": "conversation-7", "safety_identifier": "user-7",
            "modalities": ["text"], "store": False, "stream": True,
            "stream_options": {"include_usage": True, "include_obfuscation": False}}
    assert parse_model(ChatCompletionRequest, {"model": "m", "messages": MSG, **sent}).stream


@pytest.mark.parametrize("field, value", [("store", True), ("modalities", ["text", "audio"]),
                                          ("service_tier", "flex"), ("verbosity", "low")])
def test_fields_asking_for_what_is_not_served_are_refused_by_name(field, value):
    with pytest.raises(InvalidRequest) as err:
        parse_model(ChatCompletionRequest, {"model": "m", "messages": MSG, field: value})
    assert err.value.param.startswith(field)


def test_param_path_formats_nested_locations():
    loc = ("messages", 2, "content", "list[tagged-union[A,B]]", 0, "text", "text")
    assert param_path(loc) == "messages[2].content[0].text"


def test_a_form_field_named_with_brackets_is_named_in_the_error():
    with pytest.raises(InvalidRequest) as err:
        parse_model(TranscriptionRequest, {"model": "w", "include[]": "logprobs"})
    assert err.value.param == "include[]" and "include[]" in err.value.message


def test_transcription_fields():
    req = parse_model(TranscriptionRequest, {"model": "w", "response_format": "srt", "temperature": "0.2",
                                             "timestamp_granularities": ["word", "segment"]})
    assert req.wants_words() and req.temperature == 0.2
    with pytest.raises(InvalidRequest) as err:
        parse_model(TranscriptionRequest, {"model": "w", "response_format": "mp3"})
    assert err.value.param == "response_format"


@pytest.mark.parametrize("content, param", [
    ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
    ([{"type": "image_url", "image_url": {}}], "messages[0].content[0].image_url.url"),
    ([{"type": "audio"}], "messages[0].content[0]"),
])
def test_content_part_errors_point_at_the_part(content, param):
    with pytest.raises(InvalidRequest) as err:
        parse_model(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": content}]})
    assert err.value.param == param


def test_a_reply_sent_back_as_the_python_sdk_dumps_it_is_a_valid_history_message():
    """`messages.append(reply.choices[0].message.model_dump())`: the SDK's message object keeps every field of
    OpenAI's assistant message, null or not (refusal, annotations, audio, function_call)."""
    from openai.types.chat import ChatCompletionMessage, ParsedChatCompletionMessage

    from deployments.engines.chat_prompt import chat_messages

    history = [{"role": "user", "content": "Capital of France?"}]
    dumped = ChatCompletionMessage(role="assistant", content="Paris.").model_dump()
    parsed = ParsedChatCompletionMessage(role="assistant", content='{"a": 1}', parsed={"a": 1}).model_dump()
    assert {"refusal", "annotations", "audio", "function_call"} <= dumped.keys()
    for reply in (dumped, parsed, {**dumped, "annotations": []}):
        sent = parse_model(ChatCompletionRequest, {"model": "m", "messages": [*history, reply]})
        bare = {"role": "assistant", "content": reply["content"]}
        assert chat_messages(sent) == chat_messages(
            parse_model(ChatCompletionRequest, {"model": "m", "messages": [*history, bare]}))
    refused = {**dumped, "content": None, "refusal": "I cannot help with that."}
    sent = parse_model(ChatCompletionRequest, {"model": "m", "messages": [*history, refused]})
    assert sent.messages[1].text() == "I cannot help with that."  # what the assistant said
    for field, value in (("audio", {"id": "audio_1"}), ("function_call", {"name": "f", "arguments": "{}"})):
        with pytest.raises(InvalidRequest) as err:  # nothing this endpoint can act on is dropped silently
            parse_model(ChatCompletionRequest, {"model": "m", "messages": [*history, {**dumped, field: value}]})
        assert err.value.param == f"messages[1].{field}"
    with pytest.raises(InvalidRequest):
        parse_model(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "x",
                                                                         "refusal": "no"}]})


def test_a_reply_appended_as_the_sdks_return_it_is_a_valid_history_message():
    """`messages.append(reply.choices[0].message)`: with a reasoning model's thinking, and as the SDKs'
    streaming helpers assemble a tool call (its `index`, `parsed_arguments`, the message's `parsed`)."""
    from deployments.engines.chat_prompt import chat_messages

    reply = {"role": "assistant", "content": "Paris.", "reasoning_content": "The capital of France...",
             "parsed": None, "tool_calls": [{"id": "call_1", "type": "function", "index": 0, "function": {
                 "name": "f", "arguments": '{"a": 1}', "parsed_arguments": {"a": 1}}}]}
    plain = {"role": "assistant", "content": "Paris.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}
    history = [{"role": "user", "content": "Capital of France?"}]
    tool = [{"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    sent = parse_model(ChatCompletionRequest, {"model": "m", "messages": [*history, reply, *tool]})
    bare = parse_model(ChatCompletionRequest, {"model": "m", "messages": [*history, plain, *tool]})
    assert chat_messages(sent) == chat_messages(bare)  # what the model sees: the thinking stays out


def test_top_p_zero_keeps_only_the_most_likely_token():
    sampling = parse_model(ChatCompletionRequest, {"model": "m", "messages": MSG, "top_p": 0, "top_k": 40}).sampling()
    assert (sampling.top_p, sampling.top_k) == (1.0, 1)
    sampling = parse_model(ChatCompletionRequest, {"model": "m", "messages": MSG, "top_p": 0.5, "top_k": 40}).sampling()
    assert (sampling.top_p, sampling.top_k) == (0.5, 40)
    with pytest.raises(InvalidRequest):
        parse_model(ChatCompletionRequest, {"model": "m", "messages": MSG, "top_p": -0.1})


def test_the_cache_key_ignores_who_asks_and_routing_hints_but_not_what_is_asked():
    from serve_app.config import RateLimits
    from serve_app.gateway.context import RequestContext
    from serve_app.gateway.response_cache import CachePolicy, ResponseCache
    from serve_app.security.auth import Caller

    cache = ResponseCache(storage=object())  # key_for reads no storage
    policy = CachePolicy(60, True, "model-v1")
    context = RequestContext("r", 0.0, Caller("k", None, RateLimits(), False))

    def key(**extra):
        body = {"model": "m", "messages": MSG, "temperature": 0, **extra}
        return cache.key_for(policy, context, "/v1/chat/completions", parse_model(ChatCompletionRequest, body))

    assert key() == key(user="u1", safety_identifier="u2", prompt_cache_key="c", service_tier="auto", store=False,
                        modalities=["text"])
    assert key() != key(max_tokens=5) and key() != key(top_p=0)
