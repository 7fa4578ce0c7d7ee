"""HAProxy as Serve's ingress, which cluster.yaml turns on: the endpoint answers through it as through Serve's
Python proxy (streams whole, errors OpenAI-shaped, bodies capped) and a client that goes away frees its place.

The whole e2e package passed under `RAY_SERVE_ENABLE_HA_PROXY=1` once (bench/RESULTS.md); this module keeps the
ingress-facing behaviour under it in every run, on the synthetic engine so it starts in seconds.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support.keys import API_KEY
from tests.support.servers import ServeRun

pytestmark = pytest.mark.e2e
MODEL = "synthetic-through-haproxy"
BODY_CAP = 100_000


def haproxy_config(config: dict) -> None:
    args = config["applications"][0]["args"]
    args["models"] = [{"id": MODEL, "kind": "text", "engine": "synthetic",
                       "engine_options": {"tokens_per_s": 200, "default_max_tokens": 16, "max_model_len": 100_000},
                       "deployment": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}}}]
    args["rate_limits"] = {"max_concurrent_requests": 1}
    args["limits"] = {"max_request_bytes": BODY_CAP}
    args["ingress"] = {"deployment": {"num_replicas": 1}}


@pytest.fixture(scope="module")
def haproxy_run(tmp_path_factory) -> ServeRun:
    server = ServeRun([API_KEY], tmp_path_factory.mktemp("haproxy") / "serve-run.log", tweak=haproxy_config)
    server.env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"  # with the rest of config/haproxy.env, as cluster.yaml has it
    with server:
        assert "HAProxy is enabled in ServeController" in server.log_tail(10**6), "serve run did not start HAProxy"
        yield server


@pytest.fixture(scope="module")
def haproxy_endpoint(haproxy_run) -> str:
    return haproxy_run.url


def admin_command(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
        admin.settimeout(10)
        admin.connect(str(path))
        admin.sendall(command.encode() + b"\n")
        return b"".join(iter(lambda: admin.recv(65536), b"")).decode()


def chat(url: str, **extra) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 8, **extra}
    return httpx.post(url + "/v1/chat/completions", headers={"x-api-key": API_KEY}, json=body, timeout=60)


def test_the_sdk_streams_every_token_and_the_usage(haproxy_endpoint):
    client = OpenAI(api_key=API_KEY, base_url=haproxy_endpoint + "/v1")
    assert [m.id for m in client.models.list().data] == [MODEL]
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}],
                                                 max_tokens=40, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 40 and chunks[-1].usage.completion_tokens == 40
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_errors_keep_their_status_and_shape(haproxy_endpoint):
    with pytest.raises(openai.AuthenticationError) as bad_key:
        OpenAI(api_key="not-a-key", base_url=haproxy_endpoint + "/v1").models.list()
    assert bad_key.value.status_code == 401
    unknown = chat(haproxy_endpoint, model="no-such-model")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert unknown.headers["x-request-id"]


def test_bodies_over_the_cap_are_413_whether_declared_or_chunked(haproxy_endpoint):
    big = b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "' + b"x" * BODY_CAP + b'"}]}'
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    declared = httpx.post(haproxy_endpoint + "/v1/chat/completions", headers=headers, content=big, timeout=60)

    def pieces():
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    chunked = httpx.post(haproxy_endpoint + "/v1/chat/completions", headers=headers, content=pieces(), timeout=60)
    for r in (declared, chunked):
        assert r.status_code == 413, r.text
        assert "file too large" in r.json()["error"]["message"]


def test_a_client_that_goes_away_frees_its_place(haproxy_endpoint):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 20_000, "stream": True}
    with httpx.stream("POST", haproxy_endpoint + "/v1/chat/completions", json=body,
                      headers={"x-api-key": API_KEY}, timeout=60) as r:
        lines = r.iter_lines()
        assert r.status_code == 200 and next(line for line in lines if line.startswith("data: {"))
        busy = chat(haproxy_endpoint)  # the key's one concurrent place is taken by the 100 s stream
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "rate_limit_exceeded"
        assert "concurrent requests" in busy.json()["error"]["message"]
    deadline = time.monotonic() + 15
    while (after := chat(haproxy_endpoint)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert after.status_code == 200, after.text  # freed long before the abandoned stream's 20,000 tokens


def test_the_admin_socket_and_config_are_in_a_folder_only_the_ray_user_can_enter(haproxy_run):
    """Ray's default keeps them in /tmp/haproxy-serve, the socket at `mode 666 level admin` (config/haproxy.env)."""
    home = haproxy_run.haproxy_home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and home.stat().st_uid == os.geteuid()
    (admin,) = home.glob("*/admin.sock")
    (config,) = home.glob("*/haproxy.cfg")
    assert admin.is_socket() and f"stats socket {admin} " in config.read_text()
    assert "Name: HAProxy" in admin_command(admin, "show info")  # the live HAProxy's socket, not a leftover
    assert not (Path("/tmp/haproxy-serve") / admin.parent.name).exists()  # nothing of this node in Ray's default
    if os.geteuid() == 0:  # another local user (nobody) cannot reach the socket
        other = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                f"import socket; socket.socket(socket.AF_UNIX).connect({str(admin)!r})"],
                               capture_output=True, text=True, timeout=60)
        assert other.returncode != 0 and "PermissionError" in other.stderr, other.stderr
