"""Gateway behaviour that needs no model: failures inside a backend, request ids."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from serve_app.config import APIKey, LimitsConfig
from serve_app.errors import APIError
from serve_app.gateway.asgi import create_asgi_app
from serve_app.gateway.body import too_large
from serve_app.gateway.registry import ModelRegistry, ServedModel
from serve_app.security.auth import KeyStore, hash_key
from serve_app.security.rate_limit import RateLimiterServer

SECRET_DETAIL = "connection string postgres://admin:hunter2@db"


class BrokenBackend:
    async def complete(self, request):
        raise RuntimeError(SECRET_DETAIL)

    async def stream(self, request):
        yield _step()
        raise RuntimeError(SECRET_DETAIL)


def _step():
    from serve_app.contract import ChoiceDelta, GenerationStep

    return GenerationStep(deltas=[ChoiceDelta(0, "partial")])


@pytest.fixture
def client():
    app = create_asgi_app(ModelRegistry([ServedModel("m", "text", "me", BrokenBackend())]),
                         KeyStore([APIKey(name="k", sha256=hash_key("k"))]), LimitsConfig(), RateLimiterServer())
    with TestClient(app, raise_server_exceptions=False, headers={"x-api-key": "k"}) as c:
        yield c


BODY = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


def test_backend_crash_is_a_generic_500(client):
    r = client.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 500
    assert r.json() == {"error": {"message": "The server had an error while processing your request.",
                                  "type": "server_error", "param": None, "code": None}}
    assert SECRET_DETAIL not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"].startswith("req-")


def test_failure_mid_stream_is_one_error_event_then_done(client):
    r = client.post("/v1/chat/completions", json={**BODY, "stream": True})
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert r.status_code == 200
    assert '"partial"' in events[1]
    assert '"type":"server_error"' in events[-2] and events[-1] == "[DONE]"
    assert SECRET_DETAIL not in r.text


def test_client_request_id_is_echoed(client):
    assert client.get("/v1/models", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/v1/models", headers={"x-request-id": "bad id\n"}).headers["x-request-id"] != "bad id"


@pytest.mark.parametrize("raw", [b"[" * 100_000, b"1" * 5000, b'{"model": "m", "messages": 1e999999}'])
def test_pathological_json_is_400_not_500(client, raw):
    r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text


def test_only_exact_health_path_is_public(client):
    assert client.get("/health", headers={"x-api-key": ""}).status_code == 200
    assert client.get("/healthz", headers={"x-api-key": ""}).status_code == 401


def test_oversized_json_body_is_413(client):
    r = client.post("/v1/chat/completions", content=b"{" + b" " * 52_428_800 + b"}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"


@pytest.mark.parametrize("raw, param", [
    (b'{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "a\\udfffb"}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud83d"}]}]}',
     "messages[0].content[0].text"),
])
def test_lone_surrogates_are_400_naming_the_field(client, raw, param):
    r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_json_that_would_explode_in_memory_is_refused_before_parsing(client):
    started = time.monotonic()
    raw = b'{"model": "m", "messages": [' + b"[]," * 1_700_000 + b"[]]}"  # 5 MB: ~100 MB as Python objects
    r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "too many elements" in r.json()["error"]["message"]
    assert time.monotonic() - started < 5


def test_brackets_inside_strings_do_not_count_as_elements():
    from serve_app.gateway.json_guard import count_elements

    text = "[" * 600_000
    assert count_elements(('{"a": "' + text + '"}').encode()) < 10


def test_an_unterminated_string_of_escaped_quotes_is_refused_at_once(client):
    # Each `\"` used to start a scan to the end of the body: 84 KB held the event loop for 12 s, 200 KB ~70 s.
    raw = b'{' + b'"a":1,' * 600 + b'"b":"' + b'\\"' * 100_000
    started = time.monotonic()
    r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "could not parse" in r.json()["error"]["message"]
    assert time.monotonic() - started < 5


def test_an_unterminated_string_counts_as_one_value():
    from serve_app.gateway.json_guard import count_elements

    prefix = b'{' + b'"a":1,' * 600 + b'"b":"'  # 1 + 600 * 2 + 1 structural characters before the string
    assert count_elements(prefix + b'[,:{' * 300) == 1202
    assert count_elements(prefix + b'x\\') == 1202  # ending in a lone backslash


def test_a_body_that_arrives_too_slowly_is_408():
    import asyncio

    from serve_app.gateway.body import BodyDeadline, read_stream_capped

    async def trickle():
        yield b"{"
        await asyncio.sleep(1)
        yield b"}"

    with pytest.raises(APIError) as err:
        asyncio.run(read_stream_capped(trickle(), None, 100, too_large(100, "x"), BodyDeadline(0.2, 10)))
    assert err.value.status_code == 408 and err.value.code == "request_timeout"


@pytest.mark.parametrize("declared", ["\u00b2", "\u0663", "1\u00b9", "-5", ""])
def test_a_declared_length_that_is_no_ascii_number_is_ignored_and_the_bytes_counted(declared):
    import asyncio

    from serve_app.gateway.body import read_stream_capped

    async def body(size: int):
        yield b"x" * size

    assert asyncio.run(read_stream_capped(body(10), declared, 100, too_large(100, "x"))) == b"x" * 10
    with pytest.raises(APIError) as err:
        asyncio.run(read_stream_capped(body(101), declared, 100, too_large(100, "x")))
    assert err.value.status_code == 413


class RecordingLimiter(RateLimiterServer):
    def __init__(self) -> None:
        super().__init__()
        self.charged: list[dict] = []

    async def charge(self, key, limits, amounts, reserved_tokens=0.0, lease=None):
        self.charged.append(amounts)
        await super().charge(key, limits, amounts, reserved_tokens, lease)


class SlowStream:
    """50 steps, 2 tokens each after a 10-token prompt, with the usage so far on each."""

    async def stream(self, request):
        import asyncio

        from serve_app.contract import ChoiceDelta, GenerationStep, TokenUsage

        for i in range(1, 51):
            await asyncio.sleep(0.005)
            so_far = TokenUsage(10, 2 * i)
            yield (GenerationStep([ChoiceDelta(0, "ab", "length")], usage=so_far) if i == 50 else
                   GenerationStep([ChoiceDelta(0, "ab")], progress=so_far))


async def _stream_until_gone(app, path: str, body: dict, leave_after_chunks: int, spec: str) -> int:
    """Drive the ASGI app as a server would: the client goes away after some body chunks. ASGI 2.3 servers say
    so through `receive`; under 2.4 (uvicorn's) a send after it raises OSError and Starlette stops listening."""
    import asyncio
    import json

    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(b"x-api-key", b"k"), (b"content-type", b"application/json")]}
    gone, chunks, body_sent = asyncio.Event(), 0, False

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal chunks
        if gone.is_set() and spec == "2.4":
            raise OSError("the client went away")
        if message["type"] == "http.response.body" and message.get("body"):
            chunks += 1
            if chunks >= leave_after_chunks:
                gone.set()

    await app(scope, receive, send)
    return chunks


@pytest.mark.parametrize("spec", ["2.3", "2.4"])
@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
    ("/v1/completions", {"prompt": "x"}),
    ("/v1/responses", {"input": "x"}),
])
def test_a_client_that_leaves_mid_stream_is_charged_for_what_was_generated(path, body, spec, caplog):
    import asyncio

    limiter = RecordingLimiter()
    app = create_asgi_app(ModelRegistry([ServedModel("m", "text", "me", SlowStream())]),
                          KeyStore([APIKey(name="k", sha256=hash_key("k"))]), LimitsConfig(), limiter)
    chunks = asyncio.run(_stream_until_gone(app, path, {"model": "m", "stream": True, **body}, 10, spec))
    assert 10 <= chunks < 20  # it left well before the end
    [charged] = limiter.charged
    assert 10 + 2 * 5 <= charged["tokens"] < 10 + 2 * 50  # the prompt and what was generated before it left
    assert not [r for r in caplog.records if r.exc_info]  # a client leaving is no server error


class Answers:
    async def complete(self, request):
        from serve_app.contract import Completion, TokenUsage

        return Completion([("ok", "stop", None)], TokenUsage(5, 1))


def test_max_tokens_beyond_the_context_holds_no_more_than_the_context_of_a_keys_minute():
    from serve_app.config import RateLimits

    limited = KeyStore([APIKey(name="k", sha256=hash_key("k"))], RateLimits(tokens_per_minute=10_000))
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 20_000}
    for context_tokens, status in ((2048, 200), (None, 429)):  # unknown context: the estimate stands
        model = ServedModel("m", "text", "me", Answers(), context_tokens=context_tokens)
        app = create_asgi_app(ModelRegistry([model]), limited, LimitsConfig(), RateLimiterServer())
        with TestClient(app, headers={"x-api-key": "k"}) as c:
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == status
    # Over the whole minute's budget alone: no Retry-After, which the SDKs would wait out twice (60 s each)
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and "retry-after" not in r.headers
    assert r.json()["error"]["type"] == "tokens" and r.headers["x-should-retry"] == "false"  # the SDKs obey it
    assert "20,0" in r.json()["error"]["message"] and "retrying will not help" in r.json()["error"]["message"]


def test_uploads_name_the_form_field_that_is_missing_or_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDPOINT_STATE_DIR", str(tmp_path))
    app = create_asgi_app(ModelRegistry([]), KeyStore([APIKey(name="k", sha256=hash_key("k"))]), LimitsConfig(),
                          RateLimiterServer())
    line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}\n'
    with TestClient(app, headers={"x-api-key": "k"}) as c:
        for data, files, param in (({}, {"file": ("a.jsonl", line)}, "purpose"),
                                   ({"purpose": "batch", "expires_after[seconds]": "3600"},
                                    {"file": ("a.jsonl", line)}, "expires_after[seconds]"),
                                   ({"purpose": "batch"}, {"file": ("a.jsonl", line), "more": ("p", b"x")},
                                    "file"),
                                   ({"purpose": "batch"}, {"file": ("a.jsonl", b"")}, "file"),
                                   ({"purpose": "batch"}, {"other": ("a.jsonl", line)}, "file")):
            r = c.post("/v1/files", data=data, files=files)
            assert (r.status_code, r.json()["error"]["param"]) == (400, param), r.text
        r = c.post("/v1/files", data={"purpose": "batch"}, files={"file": ("a.jsonl", line)})
        assert r.status_code == 200 and r.json()["filename"] == "a.jsonl" and r.json()["bytes"] == len(line)


class _SlowUnlessBad:
    """Prompts answer after a while; the prompt "bad" is refused at once."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.finished: list[str] = []

    async def complete(self, request):
        import asyncio

        from serve_app.contract import Completion, TokenUsage
        from serve_app.errors import InvalidRequest

        if request.prompt == "bad":
            raise InvalidRequest("refused", param="prompt")
        try:
            await asyncio.sleep(2)
        except asyncio.CancelledError:
            self.cancelled.append(request.prompt)
            raise
        self.finished.append(request.prompt)
        return Completion([("x", "stop", None)], TokenUsage(1, 500))


class _Labels:
    def __init__(self) -> None:
        self.routes: set[str] = set()

    def record(self, key, model, route, status, usage, latency, ttft) -> None:
        self.routes.add(route)


def test_a_refused_prompt_cancels_its_siblings_and_metrics_label_routes_not_paths(tmp_path, monkeypatch):
    """asyncio.gather left the other prompts generating, unpaid and outside the key's concurrency place; and a
    raw path as the metric label made a time series per file id or mistyped URL."""
    monkeypatch.setenv("ENDPOINT_STATE_DIR", str(tmp_path))
    backend, labels = _SlowUnlessBad(), _Labels()
    app = create_asgi_app(ModelRegistry([ServedModel("m", "text", "me", backend)]),
                          KeyStore([APIKey(name="k", sha256=hash_key("k"))]), LimitsConfig(), RateLimiterServer(),
                          labels)
    with TestClient(app, headers={"x-api-key": "k"}) as c:
        r = c.post("/v1/completions", json={"model": "m", "prompt": ["a", "b", "bad"], "max_tokens": 5})
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
        assert sorted(backend.cancelled) == ["a", "b"] and backend.finished == []
        for i in range(3):
            c.get(f"/v1/files/file-{i}")
            c.get(f"/v1/no-such-route/{i}")
    assert labels.routes == {"/v1/completions", "/v1/files/{file_id}", "unmatched"}
