"""The gateway's own cost at GPU token rates: the synthetic engine emits tokens at a fixed rate per stream with
no compute, behind the real replica, handle and gateway code under `serve run`; what reaches the client is
compared with what the engine emitted.

Per level (streams in flight): delivered tokens/s vs emitted (streams x rate), TTFT p50 minus the engine's
own first-token time (one emission interval), and CPU time per process role (Serve proxy, gateway replica,
model replica, the bench client, the rest of the Ray cluster) per request and per 1,000 streamed tokens.

Variants (`--variants`) run in turns, level by level, repeat by repeat, so each sees the same machine:
  default              the shipped settings (stream pacing, config/serve.env)
  before               as before issue 17: every engine step its own item, Ray's defaults for config/serve.env
  interval=<ms>        the model replica merges engine steps for <ms> after the first token (0: every step)
  items=<n>|none       stream_items_per_s: the interval grows with the streams in flight (none: fixed)
  no-access-log        Serve's own per-request access lines off (tried: no gain, not shipped)
  exact-limits         every request asks the shared rate limiter first (ingress.local_admission: false)
  gateways=<n>         n gateway replicas instead of 1 (config/gpu.yaml runs at least 2)
  engine-steps         the synthetic engine yields one word per step however late it is read, so the
                       replica drains it step by step (as before engines could merge for a late reader)
  env:<NAME>=<value>   `serve run` with that environment variable (e.g. env:RAY_worker_niceness=0)
  bare=<hops>          not the endpoint: the floor under it, a raw ASGI app streaming the same tokens
                       (bench/bare_serve_app.py): 0 on uvicorn without Ray, 1 as a Serve ingress, 2 as an
                       ingress streaming from a second deployment through a handle (the endpoint's shape)
  a+b                  both (e.g. items=none+env:RAY_SERVE_ENABLE_HA_PROXY=1)

    python -m bench.gateway_overhead --variants before,default --levels 16,64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.chat import RESULTS, percentile
from tests.support.models import REPO
from tests.support.servers import SERVE_ENV, ServeRun, answers_200, free_port, stop_process_group, wait_until

KEY = "bench-overhead-" + "key"
MODEL = "synthetic-stream"
ROLES = {"proxy": "ray::ProxyActor", "haproxy": "haproxy", "gateway": "ray::ServeReplica:endpoint:gateway",
         "model": f"ray::ServeReplica:endpoint:model-{MODEL}"}


@dataclass
class Variant:
    pacing: dict = field(default_factory=dict)
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset it (Ray's default)
    access_log: bool = True
    local_admission: bool = True
    bare_hops: int | None = None  # not None: bench/bare_serve_app.py instead of the endpoint
    merge_late_reads: bool = True
    gateways: int = 1  # gateway (ingress) replicas


def synthetic_config(rate: float, tokens: int, variant: Variant):
    """The synthetic model alone, with the variant's pacing (stream_interval_ms, stream_items_per_s) over the
    shipped ones, its access log, admission and engine settings."""

    def tweak(config: dict) -> None:
        if not variant.access_log:
            config["applications"][0]["logging_config"] = {"enable_access_log": False}
        args = config["applications"][0]["args"]
        args["models"] = [{
            "id": MODEL, "kind": "text", "engine": "synthetic", **variant.pacing,
            "engine_options": {"tokens_per_s": rate, "default_max_tokens": tokens, "max_model_len": 4096,
                               "merge_late_reads": variant.merge_late_reads},
            "deployment": {"num_replicas": 1, "max_ongoing_requests": 1024, "max_queued_requests": 1024,
                           "ray_actor_options": {"num_cpus": 0}}}]
        args["rate_limits"] = {"requests_per_minute": 10_000_000, "tokens_per_minute": 1_000_000_000,
                               "max_concurrent_requests": 10_000}
        args["ingress"] = {"deployment": {"num_replicas": variant.gateways, "max_ongoing_requests": 2048},
                           "local_admission": variant.local_admission}
    return tweak


def bare_config(hops: int, rate: float):
    """`serve run` of bench/bare_serve_app.py instead of the endpoint (PYTHONPATH: `bench` is not installed)."""

    def tweak(config: dict) -> None:
        config["applications"] = [{
            "name": "endpoint", "route_prefix": "/", "import_path": "bench.bare_serve_app:build_app",
            "args": {"hops": hops, "rate": rate}, "runtime_env": {"env_vars": {"PYTHONPATH": str(REPO)}}}]
    return tweak


class BareUvicorn:
    """bench/bare_serve_app.py on uvicorn in one process: the floor without Ray."""

    def __init__(self, rate: float, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rate, self.log_path = rate, log_path

    def __enter__(self) -> BareUvicorn:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bare_serve_app", "--port", str(self.port),
                                      "--rate", str(self.rate)], cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(answers_200(self.url + "/health"), 60, "bare uvicorn /health")
        return self

    def __exit__(self, *exc) -> None:
        stop_process_group(self.proc, grace_s=10)
        self._log.close()


def role_processes(server: ServeRun | BareUvicorn) -> dict[str, list[psutil.Process]]:
    """Each role's processes; `ray`: the rest of this run's cluster (GCS, raylet, log monitor, dashboard,
    controller, the `serve run` driver), whose CPU the roles above do not show."""
    found: dict[str, list[psutil.Process]] = {role: [] for role in ROLES} | {"ray": []}
    if isinstance(server, BareUvicorn):  # its one process does the gateway's and the model's work
        return {**found, "gateway": [psutil.Process(server.proc.pid)], "client": [psutil.Process()]}
    session = str(server.ray_dir)  # this run's processes only (haproxy: by the RAY_TMPDIR it inherits)
    for proc in psutil.process_iter(["cmdline", "environ"]):
        title = " ".join(proc.info["cmdline"] or [])
        mine = session in title or (proc.info["environ"] or {}).get("RAY_TMPDIR") == session
        roles = [role for role, prefix in ROLES.items() if mine and (
            title.startswith(prefix) or (role == "haproxy" and title.split(" ")[0].endswith(prefix)))]
        for role in roles:
            found[role].append(proc)
        if mine and not roles:
            found["ray"].append(proc)
    found["client"] = [psutil.Process()]
    return found


def cpu_seconds(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out = {}
    for role, procs in processes.items():
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        out[role] = total
    return out


async def one_stream(client: httpx.AsyncClient, tokens: int) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": tokens, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    ttft, used = None, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            if ttft is None and '"content":"' in line and '"content":""' not in line:
                ttft = time.perf_counter() - start
            if '"usage":{' in line:
                used = json.loads(line[6:])["usage"]["completion_tokens"]
    return {"ttft": ttft or 0.0, "end": time.perf_counter() - start, "tokens": used}


async def level(url: str, streams: int, rounds: int, tokens: int) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": KEY}, timeout=600, limits=limits) as client:
        await one_stream(client, 4)  # connections and the route warm
        samples: list[dict] = []

        async def worker() -> None:
            for _ in range(rounds):
                samples.append(await one_stream(client, tokens))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(streams)))
        return samples, time.perf_counter() - start


def measure(server: ServeRun | BareUvicorn, streams: int, rounds: int, tokens: int, rate: float) -> dict:
    processes = role_processes(server)
    before = cpu_seconds(processes)
    samples, wall = asyncio.run(level(server.url, streams, rounds, tokens))
    spent = {role: cpu_seconds(processes)[role] - before[role] for role in processes}
    delivered = sum(s["tokens"] for s in samples)
    # the ideal: every stream back to back, each request `tokens` emissions at `rate`
    emitted_per_s = streams * rate * tokens / (tokens + rate * statistics.median(s["ttft"] for s in samples))
    return {"streams": streams, "requests": len(samples), "delivered_tok_s": delivered / wall,
            "emitted_tok_s": streams * rate, "delivered_vs_emitted": delivered / wall / (streams * rate),
            "ideal_with_ttft_tok_s": emitted_per_s,
            "added_ttft_p50_ms": 1000 * (statistics.median(s["ttft"] for s in samples) - 1 / rate),
            "added_ttft_p95_ms": 1000 * (percentile([s["ttft"] for s in samples], 0.95) - 1 / rate),
            "cpu_ms_per_request": {r: 1000 * v / len(samples) for r, v in spent.items()},
            "cpu_ms_per_1000_tokens": {r: 1e6 * v / max(delivered, 1) for r, v in spent.items()}}


def parse_variant(name: str) -> Variant:
    """`default` (the shipped settings), or parts joined by `+`: `before`, `interval=<ms>`, `items=<n>|none`,
    `no-access-log`, `exact-limits`, `engine-steps`, `env:<NAME>=<value>`, `bare=<hops>`."""
    variant = Variant()
    for part in name.split("+"):
        if part == "default":
            continue
        if part == "no-access-log":
            variant.access_log = False
        elif part == "exact-limits":
            variant.local_admission = False
        elif part == "engine-steps":
            variant.merge_late_reads = False
        elif part == "before":
            variant.pacing["stream_interval_ms"] = 0
            variant.env.update(dict.fromkeys(SERVE_ENV))
            variant.local_admission = False
        elif part.startswith("interval="):
            variant.pacing["stream_interval_ms"] = float(part.split("=", 1)[1])
        elif part.startswith("items="):
            value = part.split("=", 1)[1]
            variant.pacing["stream_items_per_s"] = None if value == "none" else int(value)
        elif part.startswith("env:"):
            key, value = part[4:].split("=", 1)
            variant.env[key] = value
        elif part.startswith("gateways="):
            variant.gateways = int(part.split("=", 1)[1])
        elif part.startswith("bare="):
            variant.bare_hops = int(part.split("=", 1)[1])
        else:
            raise SystemExit(f"unknown variant part {part!r}")
    return variant


def server_for(variant: Variant, args: argparse.Namespace, log_path: Path) -> ServeRun | BareUvicorn:
    if variant.bare_hops == 0:
        return BareUvicorn(args.rate, log_path)
    tweak = (bare_config(variant.bare_hops, args.rate) if variant.bare_hops is not None else
             synthetic_config(args.rate, args.tokens, variant))
    server = ServeRun([KEY], log_path, tweak=tweak)
    for key, value in variant.env.items():
        if value is None:
            server.env.pop(key, None)
        else:
            server.env[key] = value
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="default")
    parser.add_argument("--levels", default="16,64")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens per second per stream")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="requests per stream per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "gateway_overhead.json"))
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    variants = args.variants.split(",")
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        os.environ["ENDPOINT_STATE_DIR"] = work
        servers = {}
        for name in variants:
            server = server_for(parse_variant(name), args, Path(work) / f"serve-{len(servers)}.log")
            servers[name] = stack.enter_context(server)
        for _ in range(args.repeats):
            for streams in levels:
                for name, server in servers.items():
                    row = measure(server, streams, args.rounds, args.tokens, args.rate)
                    runs.setdefault((name, streams), []).append(row)
                    print(f"{name:<28}{streams:>4} streams {row['delivered_tok_s']:>8.0f} tok/s "
                          f"({row['delivered_vs_emitted']:.2f}x) +TTFT {row['added_ttft_p50_ms']:>6.1f} ms", flush=True)
    rows = []
    for (name, streams), samples in runs.items():
        row = {"variant": name, "streams": streams}
        for key in ("delivered_tok_s", "emitted_tok_s", "delivered_vs_emitted", "added_ttft_p50_ms",
                    "added_ttft_p95_ms"):
            row[key] = statistics.median(s[key] for s in samples)
        for key in ("cpu_ms_per_request", "cpu_ms_per_1000_tokens"):
            row[key] = {r: statistics.median(s[key][r] for s in samples) for r in samples[0][key]}
        rows.append(row)
    print(f"\n{'variant':<28}{'streams':>8}{'delivered':>11}{'vs emitted':>11}{'+TTFT p50':>11}"
          f"{'CPU ms/1k tok (proxy+haproxy/gateway/model/client/rest of Ray)':>63}")
    for row in rows:
        cpu = row["cpu_ms_per_1000_tokens"]
        print(f"{row['variant']:<28}{row['streams']:>8}{row['delivered_tok_s']:>11.0f}"
              f"{row['delivered_vs_emitted']:>10.2f}x{row['added_ttft_p50_ms']:>9.1f}ms"
              f"{cpu['proxy'] + cpu['haproxy']:>14.0f}{cpu['gateway']:>9.0f}{cpu['model']:>9.0f}"
              f"{cpu['client']:>9.0f}{cpu['ray']:>9.0f}")
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out)
    out.write_text(json.dumps({"rate": args.rate, "tokens": args.tokens, "rounds": args.rounds,
                               "repeats": args.repeats, "rows": rows}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
