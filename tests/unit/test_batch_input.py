"""Batch input files are checked whole before they are accepted: each mistake is a 400 naming its line."""

from __future__ import annotations

import json

import pytest

from serve_app.batches.input import check_batch_lines, parse_batch_file
from serve_app.errors import InvalidRequest


def line(custom_id="a", url="/v1/chat/completions", **body) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}})


def test_a_good_file_parses_with_blank_lines_skipped():
    lines = parse_batch_file(f"{line('a')}\n\n{line('b', '/v1/completions')}\n".encode(), 10, 1000)
    assert [(x.index, x.number, x.custom_id, x.url) for x in lines] == [
        (0, 1, "a", "/v1/chat/completions"), (1, 3, "b", "/v1/completions")]


@pytest.mark.parametrize("content, found", [
    (f"{line('a')}\n{{not json", "Line 2 of the batch file: not valid JSON"),
    (f"{line('a')}\n{line('a')}", "Line 2 of the batch file: duplicate custom_id 'a' (first on line 1)"),
    (line(url="/v1/audio/transcriptions"), "Line 1 of the batch file: `url` must be one of"),
    (line(stream=True), "streaming is not available in batches"),
    ('{"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": {"model": "m"}}', "`method` must be"),
    ('{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}', "must be a request object"),
    ('{"custom_id": "", "method": "POST", "url": "/v1/completions", "body": {"model": "m"}}', "`custom_id` must"),
    ('[1, 2]', "must be a JSON object"),
    (line() + "\n" + json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/completions", "body": {
        "model": "m"}, "extra": 1}), "Line 2 of the batch file: unknown fields ['extra']"),
    ("\n\n", "holds no requests"),
    (line() + "\n" + "[" * 100_000 + "]" * 100_000, "Line 2 of the batch file: too many JSON elements"),
    (line(messages=[{"role": "user", "content": "\ud800"}]),
     "the string at `body.messages[0].content` is not valid Unicode"),
])
def test_mistakes_name_their_line(content, found):
    with pytest.raises(InvalidRequest) as caught:
        parse_batch_file(content.encode(), 10, 1000)
    assert found in caught.value.message and caught.value.param == "file"


def test_hostile_nesting_is_a_400_even_under_the_element_bound():
    with pytest.raises(InvalidRequest, match="Line 1 of the batch file: not valid JSON"):
        parse_batch_file(("[" * 5000 + "]" * 5000).encode(), 10, 10_000_000)


def test_a_line_separator_inside_a_string_does_not_cut_the_line():
    raw = line(messages=[{"role": "user", "content": "one\u2028two"}]).replace("\\u2028", "\u2028")
    assert "\u2028" in raw  # the separator raw in the file, as JSON allows
    lines = parse_batch_file(raw.encode(), 10, 1000)
    assert lines[0].body["messages"][0]["content"] == "one\u2028two"


def test_too_many_lines_and_bad_encoding_are_refused():
    with pytest.raises(InvalidRequest, match="more than 2 requests"):
        parse_batch_file("\n".join(line(str(i)) for i in range(3)).encode(), 2, 1000)
    with pytest.raises(InvalidRequest, match="UTF-8"):
        parse_batch_file(b"\xff\xfe", 2, 1000)


def test_at_batch_creation_lines_must_match_the_endpoint_and_name_usable_models():
    lines = parse_batch_file(f"{line('a')}\n{line('b', model='secret')}".encode(), 10, 1000)
    with pytest.raises(InvalidRequest, match="Line 1 of the input file .* differs from the batch's endpoint"):
        check_batch_lines(lines, "/v1/completions", lambda model: True)
    with pytest.raises(InvalidRequest) as caught:
        check_batch_lines(lines, "/v1/chat/completions", lambda model: model == "m")
    assert "Line 2 of the input file (custom_id 'b'): the model `secret` does not exist" in caught.value.message
    assert caught.value.param == "input_file_id" and caught.value.code == "model_not_found"


def test_the_runner_waits_out_refusals_that_pass_and_keeps_final_answers():
    from serve_app.batches.runner import retry_after

    limited = {"error": {"code": "rate_limit_exceeded"}}
    assert retry_after(429, limited, "7") == 7.0
    assert retry_after(429, limited, None) is None  # no Retry-After: the request alone is over a limit
    assert retry_after(429, limited, "3600") == 60.0  # checked again at least every minute
    assert retry_after(503, {"error": {"code": "model_overloaded"}}, "2") == 2.0
    assert retry_after(429, {"error": {"code": "budget_exceeded"}}, "40000") is None
    assert retry_after(400, {"error": {"code": None}}, None) is None
    assert retry_after(200, {"id": "chatcmpl-1"}, None) is None
