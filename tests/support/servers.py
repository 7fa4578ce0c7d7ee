"""Start the endpoint for tests: the real `serve run` (Ray Serve) or the same gateway on uvicorn in-process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
import yaml

from tests.support.models import CPU_CONFIG, REPO, load_config
from tests.support.ports import free_port


def env_file(name: str) -> dict[str, str]:
    lines = (REPO / "config" / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def serve_env() -> dict[str, str]:
    """config/serve.env, which `make run` and cluster.yaml use too: the tests run the product as shipped."""
    return env_file("serve.env")


def haproxy_env(home: Path) -> dict[str, str]:
    """config/haproxy.env as cluster.yaml's `ray start` lines read it, with `home` for the Ray user's $HOME."""
    return {name: value.replace("${HOME}", str(home)) for name, value in env_file("haproxy.env").items()}


SERVE_ENV = serve_env()


def port_is_free(port: int) -> bool:
    """Two Serve proxies on one port split connections silently (SO_REUSEPORT): benches check first."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.5,
               check: Callable[[], None] | None = None) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` otherwise (never a silent fall-through).
    `check` runs first on every round (e.g. raise if the server process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check is not None:
            check()
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached after {timeout:g} s")


def answers_200(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


class LocalGateway:
    """The gateway app with model servers in this process: the fast path for API behaviour tests."""

    def __init__(self, api_keys: list[str], config_path: Path = CPU_CONFIG,
                 tweak: Callable[[dict], None] | None = None) -> None:
        from deployments.embedding import EmbeddingModelServer
        from deployments.speech import SpeechModelServer
        from deployments.speech_coordinator import SpeechCoordinator
        from deployments.text import TextModelServer
        from serve_app.config import AppArgs
        from serve_app.gateway.asgi import build_gateway
        from serve_app.security.auth import keys_from_secrets
        from serve_app.security.rate_limit import RateLimiterServer

        config = load_config(config_path)
        if tweak is not None:
            tweak(config)
        args = AppArgs.model_validate(config["applications"][0]["args"])
        self.servers = servers = {
            m.id: SpeechCoordinator(m.model_dump(), SpeechModelServer(m.model_dump())) if m.kind == "speech"
            else EmbeddingModelServer(m.model_dump()) if m.kind == "embedding" else TextModelServer(m.model_dump())
            for m in args.models
        }
        keys = keys_from_secrets(api_keys) + list(args.api_keys)
        app = build_gateway(args, keys, servers, RateLimiterServer())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LocalGateway:
        self._thread.start()
        wait_until(answers_200(self.url + "/health"), 30, "in-process gateway /health")
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        for server in self.servers.values():  # stop engine threads and processes (vLLM's engine core)
            if hasattr(server, "shutdown"):
                server.shutdown()


class ServeRun:
    """`serve run <config>` in a subprocess, on a free port, exactly as users start the product."""

    def __init__(self, api_keys: list[str], log_path: Path, config_path: Path = CPU_CONFIG,
                 tweak: Callable[[dict], None] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        config = load_config(config_path)
        config["http_options"]["port"] = self.port
        if tweak is not None:
            tweak(config)
        self.config_path = log_path.with_suffix(".yaml")
        self.config_path.write_text(yaml.safe_dump(config))
        # Ray's files for this run in a folder of its own, so logs and metrics ports are read from here, not
        # from whichever cluster last wrote /tmp/ray/session_latest. Short: Ray's socket paths must fit in
        # 107 bytes.
        self.ray_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.env = {**os.environ, "ENDPOINT_API_KEYS": ",".join(api_keys), "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_TMPDIR": str(self.ray_dir), **SERVE_ENV}
        self.env.pop("RAY_ADDRESS", None)
        self.haproxy_user_home: Path | None = None

    def __enter__(self) -> ServeRun:
        if self.env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
            # As cluster.yaml starts it: HAProxy's files in a private folder, this run's own. Its own short $HOME:
            # HAProxy binds the admin socket as `<path>.<pid>.tmp`, which must fit in 107 bytes.
            self.haproxy_user_home = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
            self.env.update(haproxy_env(self.haproxy_user_home))
            self.haproxy_home.mkdir(mode=0o700)  # cluster.yaml: install -d -m 700
            # HAProxy's stats and metrics listeners default to fixed ports (8404, 9101): a second cluster on the
            # box would fail to start.
            for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
                self.env.setdefault(name, str(free_port()))
        serve_bin = Path(sys.executable).with_name("serve")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(serve_bin), "run", str(self.config_path)], cwd=REPO, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(answers_200(self.url + "/health"), 240, "serve run /health", check=self._check_alive)
        return self

    @property
    def haproxy_home(self) -> Path:
        """The folder of HAProxy's config and admin socket (config/haproxy.env)."""
        return Path(self.env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])

    @property
    def session_dir(self) -> Path:
        """This run's Ray session folder (logs/, metrics_export_port_*); Ray adds `ray/` to RAY_TMPDIR."""
        return self.ray_dir / "ray" / "session_latest"

    def replica_pids(self, deployment: str, app: str = "endpoint") -> list[int]:
        """Processes of a deployment's live replicas in this run (same session as `serve run`)."""
        out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True, check=True).stdout
        title = f"ray::ServeReplica:{app}:{deployment}"
        # while a replica runs a call (a health check, say) Ray titles it `<title>.<method>`
        return [int(pid) for pid, sid, args in (line.split(None, 2) for line in out.splitlines() if line.strip())
                if int(sid) == self.proc.pid and (args.strip() == title or args.startswith(title + "."))]

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"serve run exited ({self.proc.returncode}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def __exit__(self, *exc) -> None:
        stop_process_group(self.proc)  # Ctrl-C: serve run tears down the app and its local Ray cluster
        self._log.close()
        shutil.rmtree(self.ray_dir, ignore_errors=True)
        if self.haproxy_user_home is not None:
            shutil.rmtree(self.haproxy_user_home, ignore_errors=True)


def stop_process_group(proc: subprocess.Popen, grace_s: float = 60) -> None:
    """Ctrl-C a server started with start_new_session=True (it stops its own children), then kill its whole
    process group if it lingers."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def warm_up_chat(url: str, api_key: str, model: str) -> None:
    r = httpx.post(url + "/v1/chat/completions", headers={"x-api-key": api_key}, timeout=300, json={
        "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    r.raise_for_status()


def warm_up(url: str, api_key: str, chat_models: list[str], speech_model: str, audio: Path) -> None:
    """One real call per model: handles queue requests until replicas are up, so this waits for them."""
    headers = {"x-api-key": api_key}
    for model in chat_models:
        warm_up_chat(url, api_key, model)
    r = httpx.post(url + "/v1/audio/transcriptions", headers=headers, timeout=300,
                   data={"model": speech_model}, files={"file": (audio.name, audio.read_bytes())})
    r.raise_for_status()
