"""Soak: many concurrent chat streams for minutes against `serve run` (the CPU default), then errors,
latency percentiles and the memory of every Serve process at start and end.

    python -m bench.soak --streams 64 --seconds 300      # prints a table, saves bench/results/soak.json

A leak shows as RSS that grows with the number of requests served; a healthy service answers every request
(200 with a complete stream) and its proxy and gateway RSS stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.models import CHAT_MODEL, CPU_CONFIG, REPO, SPEECH_MODEL
from tests.support.servers import ServeRun, port_is_free, warm_up

KEY = "soak-bench-" + "7d1e"
PROMPT = [{"role": "user", "content": "Tell me a short story about a lighthouse."}]


def serve_processes(session_id: int) -> dict[str, list[int]]:
    """Ray's Serve processes of one `serve run` (its session): proxy, controller and each deployment's replicas."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True, check=True).stdout
    found: dict[str, list[int]] = {}
    for line in out.splitlines():
        pid, sid, args = line.split(None, 2)
        if int(sid) != session_id or not args.startswith("ray::"):
            continue
        name = args.strip().removeprefix("ray::")
        if name.startswith(("ServeReplica:", "ProxyActor", "ServeController")):
            found.setdefault(name.split(":")[-1] if name.startswith("ServeReplica") else name, []).append(int(pid))
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(session_id: int) -> dict[str, dict]:
    """Per deployment (or Serve process): replica count and their RSS summed."""
    return {name: {"replicas": len(pids), "rss_mb": round(sum(rss_mb(p) for p in pids), 1)}
            for name, pids in sorted(serve_processes(session_id).items())}


async def stream_once(client: httpx.AsyncClient, max_tokens: int) -> tuple[bool, float, str]:
    started = time.perf_counter()
    body = {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": max_tokens, "stream": True}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return False, time.perf_counter() - started, f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
            last = ""
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    last = line[6:]
                    if '"error"' in last:
                        return False, time.perf_counter() - started, last[:200]
            ok = last == "[DONE]"
            return ok, time.perf_counter() - started, "" if ok else "stream ended without [DONE]"
    except httpx.HTTPError as exc:
        return False, time.perf_counter() - started, type(exc).__name__


async def soak(url: str, streams: int, seconds: float, max_tokens: int, session_id: int,
               sample_every_s: float = 30.0) -> dict:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    results: list[tuple[bool, float, str]] = []
    samples: list[dict] = []
    started = time.monotonic()
    ends = started + seconds

    async def sample_memory() -> None:  # RSS over time: a leak keeps growing, warm-up levels off
        while time.monotonic() < ends:
            samples.append({"t_s": round(time.monotonic() - started), "requests": len(results),
                            "memory": await asyncio.to_thread(memory, session_id)})
            await asyncio.sleep(sample_every_s)
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": KEY}, timeout=600, limits=limits) as client:
        async def worker() -> None:
            while time.monotonic() < ends:
                results.append(await stream_once(client, max_tokens))

        await asyncio.gather(sample_memory(), *(worker() for _ in range(streams)))
    latencies = sorted(latency for ok, latency, _ in results if ok)
    errors = [why for ok, _, why in results if not ok]
    return {
        "requests": len(results), "errors": len(errors), "error_samples": errors[:5],
        "latency_p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "latency_p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 2) if latencies else None,
        "requests_per_s": round(len(results) / seconds, 2),
        "memory_samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--config", default=str(CPU_CONFIG))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "soak.json"))
    args = parser.parse_args()
    if not port_is_free(8000):
        raise SystemExit("a Serve app is up on port 8000: stop it first (it would share the CPU with this run)")
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    audio = workdir / "hi.wav"
    subprocess.run(["espeak-ng", "-w", str(audio), "hello"], check=True)
    with ServeRun([KEY], workdir / "serve-run.log", Path(args.config)) as server:
        warm_up(server.url, KEY, [CHAT_MODEL], SPEECH_MODEL, audio)
        result = asyncio.run(soak(server.url, args.streams, args.seconds, args.max_tokens, server.proc.pid))
        result["memory_samples"].append({"t_s": round(args.seconds), "requests": result["requests"],
                                         "memory": memory(server.proc.pid)})
    report = {"settings": vars(args), "cpu_count": os.cpu_count(), **result}
    print(f"{args.streams} streams x {args.seconds:g} s, {args.max_tokens} tokens each: {result['requests']} requests, "
          f"{result['errors']} errors, p50 {result['latency_p50_s']} s, p99 {result['latency_p99_s']} s")
    samples = result["memory_samples"]
    times = [s["t_s"] for s in samples]
    print(f"{'RSS MB (replicas) at t =':<34}" + "".join(f"{t:>11}s" for t in times))
    for name in sorted(samples[-1]["memory"]):
        cells = [s["memory"].get(name) for s in samples]
        print(f"{name:<34}" + "".join(f"{c['rss_mb']:>8.1f} ({c['replicas']})" if c else f"{'-':>12}" for c in cells))
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
