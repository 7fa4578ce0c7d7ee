"""Durable state end to end with the OpenAI Python SDK against `serve run`, once on SQLite and once on
PostgreSQL: files, batches (and a batch runner killed mid-batch), the response cache, the usage ledger,
spend budgets, and a restart that keeps them all. Tests run in file order; the restart comes last."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import openai
import pytest

from tests.durable.conftest import ADMIN, BUDGET, BUDGET_TOKENS_PER_DAY
from tests.support.errors import assert_error
from tests.support.keys import API_KEY, OTHER_KEY
from tests.support.models import CHAT_MODEL, EMBEDDING_MODEL
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e
FLUSH_S = 2.5  # the ledger writes every second; a little more for the write itself


def request_line(custom_id: str, content: str = "Say hi.", max_tokens: int = 6, **body) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": content}],
                                "max_tokens": max_tokens, **body}})


def upload(client, lines: list[str]):
    return client.files.create(file=("requests.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch")


def finished(client, batch_id: str, timeout: float = 300):
    result = {}

    def done() -> bool:
        result["batch"] = client.batches.retrieve(batch_id)
        return result["batch"].status in ("completed", "failed", "expired", "cancelled")

    wait_until(done, timeout, f"batch {batch_id} to finish", interval=1)
    return result["batch"]


def usage(durable, key: str, **params) -> dict:
    r = httpx.get(durable.url + "/v1/usage", headers={"x-api-key": key}, timeout=30,
                  params={"start_time": int(time.time()) - 86400, **params})
    assert r.status_code == 200, r.text
    return r.json()


def totals(page: dict, **match) -> dict:
    out: dict[str, int] = {}
    for bucket in page["data"]:
        for result in bucket["results"]:
            if all(result.get(k) == v for k, v in match.items()):
                for name in ("num_model_requests", "input_tokens", "output_tokens", "cached_requests"):
                    out[name] = out.get(name, 0) + result[name]
    return out


def test_files_belong_to_their_key(durable):
    client, other = durable.client(), durable.client(OTHER_KEY)
    made = upload(client, [request_line("a"), request_line("b")])
    assert made.purpose == "batch" and made.bytes > 0 and made.id.startswith("file-")
    assert client.files.retrieve(made.id).filename == "requests.jsonl"
    assert made.id in [f.id for f in client.files.list()]
    assert client.files.content(made.id).text.splitlines()[1] == request_line("b")
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(made.id)
    assert made.id not in [f.id for f in other.files.list()]
    assert client.files.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made.id)


def test_bad_files_and_batches_are_refused_naming_the_line(durable):
    client = durable.client()
    with pytest.raises(openai.BadRequestError) as caught:
        upload(client, [request_line("a"), request_line("a")])
    assert "Line 2 of the batch file: duplicate custom_id 'a'" in caught.value.message
    with pytest.raises(openai.BadRequestError, match="Line 1 of the batch file: not valid JSON"):
        client.files.create(file=("x.jsonl", b"{oops\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="`purpose` must be one of"):
        client.files.create(file=("x.jsonl", request_line("a").encode()), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:  # no expiry is kept here: refused, not dropped
        client.files.create(file=("x.jsonl", request_line("a").encode()), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 3600})
    assert caught.value.param == "expires_after[anchor]"
    unknown = upload(client, [request_line("a"), request_line("b", model="no-such-model")])
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=unknown.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert "Line 2 of the input file (custom_id 'b'): the model `no-such-model` does not exist" in caught.value.message
    with pytest.raises(openai.BadRequestError, match="Line 1 of the input file .* differs from the batch's endpoint"):
        client.batches.create(input_file_id=unknown.id, endpoint="/v1/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):  # another key's file does not exist for this one
        durable.client(OTHER_KEY).batches.create(input_file_id=unknown.id, endpoint="/v1/chat/completions",
                                                 completion_window="24h")


def test_a_batch_runs_to_openai_shaped_output_and_error_files(durable):
    client = durable.client()
    lines = [request_line(f"q{i}", f"Name a color, {i}.") for i in range(4)]
    lines.append(request_line("too-hot", temperature=5))  # refused by the chat route: an error line
    made = upload(client, lines)
    batch = client.batches.create(input_file_id=made.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"job": "colors"})
    assert batch.status == "validating" and batch.request_counts.total == 5 and batch.metadata == {"job": "colors"}
    with pytest.raises(openai.NotFoundError):
        durable.client(OTHER_KEY).batches.retrieve(batch.id)
    done = finished(client, batch.id)
    assert done.status == "completed" and done.completed_at >= done.in_progress_at >= done.created_at
    assert (done.request_counts.completed, done.request_counts.failed) == (4, 1)
    outputs = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in outputs) == ["q0", "q1", "q2", "q3"]
    for out in outputs:
        assert out["id"].startswith("batch_req_") and out["error"] is None
        assert out["response"]["status_code"] == 200
        assert out["response"]["body"]["object"] == "chat.completion"
        assert out["response"]["body"]["usage"]["completion_tokens"] >= 1
    used = [out["response"]["body"]["usage"] for out in outputs]  # the batch's usage: its lines' (the refused: 0)
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (
        sum(u["prompt_tokens"] for u in used), sum(u["completion_tokens"] for u in used),
        sum(u["total_tokens"] for u in used))
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["too-hot"] and errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["param"] == "temperature"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert batch.id in [b.id for b in client.batches.list()]
    time.sleep(FLUSH_S)  # the runner's ledger rows: charged to the key, marked with the batch
    by_batch = usage(durable, API_KEY, group_by=["batch"])
    # the refused line never reached a model: in the ledger, but not a model request
    assert totals(by_batch, batch=batch.id)["num_model_requests"] == 4


def test_a_batch_of_embeddings_runs_through_the_embeddings_route(durable):
    client = durable.client()
    texts = ["first document", "second document", "third document"]
    lines = [json.dumps({"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": EMBEDDING_MODEL, "input": text}}) for i, text in enumerate(texts)]
    batch = client.batches.create(input_file_id=upload(client, lines).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    done = finished(client, batch.id)
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    outputs = {o["custom_id"]: o["response"]["body"]
               for o in map(json.loads, client.files.content(done.output_file_id).text.splitlines())}
    direct = client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    for i, item in enumerate(direct.data):
        assert outputs[f"e{i}"]["object"] == "list" and outputs[f"e{i}"]["usage"]["prompt_tokens"] >= 3
        assert outputs[f"e{i}"]["data"][0]["embedding"] == pytest.approx(item.embedding, abs=1e-5)


def test_a_cancelled_batch_ends_with_its_unrun_lines_reported(durable):
    client = durable.client()
    made = upload(client, [request_line(f"c{i}", max_tokens=24) for i in range(40)])
    batch = client.batches.create(input_file_id=made.id, endpoint="/v1/chat/completions", completion_window="24h")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = finished(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts.completed < 40
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    outputs = ([json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
               if done.output_file_id else [])
    assert sorted(x["custom_id"] for x in errors + outputs) == sorted(f"c{i}" for i in range(40))
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    completed = next(b.id for b in client.batches.list() if b.status == "completed")
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status `completed`"):
        client.batches.cancel(completed)


def test_a_killed_batch_runner_resumes_without_running_finished_lines_again(durable):
    client = durable.client()
    total = 16
    made = upload(client, [request_line(f"k{i}", f"Count to {i}.", max_tokens=12) for i in range(total)])
    batch = client.batches.create(input_file_id=made.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 4, 300,
               "four lines done", interval=0.5)
    pids = durable.server.replica_pids("batch-runner")
    assert len(pids) == 1
    before = client.batches.retrieve(batch.id).request_counts.completed
    os.kill(pids[0], signal.SIGKILL)
    done = finished(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == total
    assert durable.server.replica_pids("batch-runner") != pids  # Serve replaced the runner, which resumed
    outputs = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in outputs) == sorted(f"k{i}" for i in range(total))
    time.sleep(FLUSH_S)
    ran = totals(usage(durable, API_KEY, group_by=["batch"]), batch=batch.id)["num_model_requests"]
    # Finished lines never ran again: at most the lines in flight at the kill (1 at a time) ran twice, and
    # the dead runner's last second of ledger rows may be lost.
    assert total - 2 <= ran <= total + 2, (ran, before)


def repeat_until_hit(send, x_cache=lambda r: r.headers["x-cache"], within_s: float = 5.0):
    """An answer is stored in the background just after it is sent (never delaying it), so a repeat sent at
    once may come before that write lands: the repeat must be a hit within a few seconds."""
    deadline = time.monotonic() + within_s
    repeat = send()
    while x_cache(repeat) == "miss" and time.monotonic() < deadline:
        time.sleep(0.2)
        repeat = send()
    return repeat


def test_deterministic_answers_come_from_the_cache_whole_and_streamed(durable):
    client = durable.client()
    question = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Cache me {time.time()}"}],
                "max_tokens": 8, "temperature": 0}
    first = client.chat.completions.with_raw_response.create(**question)
    second = repeat_until_hit(lambda: client.chat.completions.with_raw_response.create(**question))
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    a, b = first.parse(), second.parse()
    assert a.choices[0].message.content == b.choices[0].message.content and a.id != b.id
    assert a.usage == b.usage

    def streamed() -> tuple[str, str]:
        with client.chat.completions.with_streaming_response.create(**question, stream=True) as response:
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            return response.headers["x-cache"], text

    miss, text1 = streamed()
    hit, text2 = repeat_until_hit(streamed, x_cache=lambda answer: answer[0])
    assert (miss, hit) == ("miss", "hit") and text1 == text2 == a.choices[0].message.content
    other = durable.client(OTHER_KEY).chat.completions.with_raw_response.create(**question)
    assert other.headers["x-cache"] == "miss"  # scoped per key
    sampled = client.chat.completions.with_raw_response.create(**{**question, "temperature": 0.7})
    assert "x-cache" not in sampled.headers  # not deterministic: never cached
    def seeded():
        return client.chat.completions.with_raw_response.create(**{**question, "temperature": 0.7, "seed": 5})

    assert [r.headers["x-cache"] for r in (seeded(), repeat_until_hit(seeded))] == ["miss", "hit"]
    time.sleep(FLUSH_S)
    mine = totals(usage(durable, API_KEY, group_by=["model"]), model=CHAT_MODEL)
    assert mine["cached_requests"] >= 3


def test_usage_reads_the_ledger_with_openai_parameters(durable):
    r = httpx.get(durable.url + "/v1/usage", headers={"x-api-key": API_KEY}, timeout=30)
    assert_error(r, 400, None, "start_time")
    r = httpx.get(durable.url + "/v1/usage", headers={"x-api-key": API_KEY}, timeout=30,
                  params={"start_time": 0, "bucket_width": "1w"})
    assert_error(r, 400, None, "bucket_width")
    durable.client(OTHER_KEY).chat.completions.create(model=CHAT_MODEL, max_tokens=2,
                                                      messages=[{"role": "user", "content": "hello"}])
    time.sleep(FLUSH_S)
    mine = usage(durable, API_KEY, group_by=["key"], bucket_width="1h", limit=24)
    assert {r["key"] for b in mine["data"] for r in b["results"]} == {"env-1"}  # only its own
    everyone = usage(durable, ADMIN, group_by=["key", "model"], bucket_width="1h", limit=24)
    keys = {r["key"] for b in everyone["data"] for r in b["results"]}
    assert {"env-1", "env-2"} <= keys
    models = {r["model"] for b in everyone["data"] for r in b["results"]}
    assert CHAT_MODEL in models and models <= {CHAT_MODEL, EMBEDDING_MODEL}  # the two models this app serves
    start = int(time.time()) - 86400  # one start for both pages: `page` is only valid with the start it came from
    paged = usage(durable, ADMIN, start_time=start, bucket_width="1h", limit=2)
    assert len(paged["data"]) == 2 and paged["has_more"] and paged["next_page"]
    rest = usage(durable, ADMIN, start_time=start, bucket_width="1h", limit=24, page=paged["next_page"])
    assert rest["data"][0]["start_time"] == paged["data"][-1]["end_time"]


def test_a_spent_budget_is_a_429_naming_it_and_when_it_resets(durable):
    client = durable.client(BUDGET)
    spent = 0
    for _ in range(10):
        try:
            answer = client.chat.completions.create(model=CHAT_MODEL, max_tokens=16,
                                                    messages=[{"role": "user", "content": "Tell me a story."}])
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "budget_exceeded"
            assert f"daily budget of {BUDGET_TOKENS_PER_DAY} tokens for key `budget` is spent" in exc.message
            assert "resets at" in exc.message and int(exc.response.headers["retry-after"]) > 0
            assert spent >= BUDGET_TOKENS_PER_DAY
            # spending is refused, reading what the key has is not: its usage, files and batches
            assert usage(durable, BUDGET, start_time=int(time.time()) - 3600)["data"] is not None
            assert client.files.list().data is not None and client.batches.list().data is not None
            return
        spent += answer.usage.total_tokens
        time.sleep(1.2)  # each gateway replica re-reads the ledger at most once a second
    pytest.fail(f"spent {spent} tokens of a {BUDGET_TOKENS_PER_DAY}-token budget and was never refused")


def test_after_a_restart_usage_files_and_batches_are_still_there(durable):
    client = durable.client()
    kept_file = upload(client, [request_line("keep")])
    batch = next(iter(client.batches.list())).id
    time.sleep(FLUSH_S)
    before = totals(usage(durable, API_KEY, group_by=["model"]), model=CHAT_MODEL)
    assert before["num_model_requests"] > 0
    durable.restart()
    client = durable.client()
    after = totals(usage(durable, API_KEY, group_by=["model"]), model=CHAT_MODEL)
    assert after["num_model_requests"] >= before["num_model_requests"]
    assert after["input_tokens"] >= before["input_tokens"]
    assert client.files.content(kept_file.id).text.strip() == request_line("keep")
    assert client.batches.retrieve(batch).status in ("completed", "cancelled")
