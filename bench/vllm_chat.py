"""vLLM benchmark: the gateway with the vLLM engine vs vLLM's own OpenAI server vs the gateway with transformers.

All three serve SmolLM2-135M-Instruct (float32, 2048 context, eager) on this machine and are measured in the
same run, interleaved level by level (see bench/chat.py), over HTTP with the OpenAI SDK:
  gateway-vllm          `serve run` of config/cpu-vllm.yaml's SmolLM2 entry (AsyncLLM inside a Serve replica)
  vllm-server           `python -m vllm.entrypoints.openai.api_server` on the same weights and engine settings
  gateway-transformers  the same Serve app's second model: config/cpu.yaml's transformers engine
  serve-llm             with --serve-llm: Ray Serve LLM's own OpenAI app on the same weights and engine settings
                        (bench/serve_llm_peer.py; needs `pip install -e '.[peers]'`), instead of gateway-transformers
  vllm-server-niceN     with --server-nice N: a second vLLM server started N nice levels down, instead of
                        gateway-transformers
  gateway-vllm-nice0    with --nice0: the shipped vLLM SmolLM2 with `compute_nice: 0` (its engine core at the request
                        path's priority), its own `serve run`, instead of gateway-transformers

    python -m bench.vllm_chat            # prints tables, saves bench/results/vllm_chat.json
    python -m bench.vllm_chat --serve-llm --out bench/results/peers.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.chat import RESULTS, median_row, openai_request, print_table, report, run_level
from bench.serve_llm_peer import engine_flags, peer
from tests.support.models import CHAT_MODEL as CHAT
from tests.support.models import CPU_CONFIG, VLLM_CONFIG

TRANSFORMERS = CHAT + "-transformers"


def bench_config(config: dict) -> None:
    """config/cpu-vllm.yaml with only its vLLM SmolLM2, plus config/cpu.yaml's transformers SmolLM2 beside it."""
    from tests.support.models import app_args

    args = config["applications"][0]["args"]
    vllm_model = next(m for m in args["models"] if m["id"] == CHAT)
    hf_model = next(m for m in app_args(CPU_CONFIG)["models"] if m["id"] == CHAT)
    hf_model = {**hf_model, "id": TRANSFORMERS}
    hf_model.pop("response_cache", None)  # the bench repeats its seeded requests: never answer from the cache
    for m in (vllm_model, hf_model):
        m["deployment"].pop("autoscaling_config", None)
        m["deployment"]["num_replicas"] = 1
    args["models"] = [vllm_model, hf_model]


def vllm_only_config(config: dict) -> None:
    """The vLLM SmolLM2 alone, as shipped (`--serve-llm`)."""
    bench_config(config)
    args = config["applications"][0]["args"]
    args["models"] = args["models"][:1]


def before_config(config: dict) -> None:
    """The vLLM SmolLM2 alone as before issue 17's levers, for `--before`: every engine step its own stream item
    (and, set by main(), Ray's defaults for config/serve.env)."""
    vllm_only_config(config)
    args = config["applications"][0]["args"]
    args["models"] = [{**args["models"][0], "stream_interval_ms": 0}]


def nice0_config(config: dict) -> None:
    """The vLLM SmolLM2 alone, its engine core at the request path's priority (`--nice0`)."""
    vllm_only_config(config)
    model = config["applications"][0]["args"]["models"][0]
    model["engine_options"] = {**model["engine_options"], "compute_nice": 0}


@contextlib.contextmanager
def vllm_server(model_path: str, options: dict, port: int, log: Path, nice: int = 0):
    """vLLM's own OpenAI server with the engine settings the gateway's replica uses; `nice` levels below this
    process (its engine core inherits them)."""
    import httpx

    from tests.support.servers import answers_200, stop_process_group, wait_until

    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
                                 "--served-model-name", CHAT, "--host", "127.0.0.1", f"--port={port}",
                                 *engine_flags(options)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=(lambda: os.nice(nice)) if nice else None)
        def check_alive() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited:\n{log.read_text(errors='replace')[-3000:]}")

        try:
            wait_until(answers_200(f"http://127.0.0.1:{port}/health"), 600, "vLLM server /health", check=check_alive)
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).raise_for_status()
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process_group(proc)


async def measure(targets: dict[str, tuple[str, str]], args) -> list[dict]:
    from openai import AsyncOpenAI

    clients = {name: AsyncOpenAI(base_url=url + "/v1", api_key=args.api_key, max_retries=0, timeout=600)
               for name, (url, _) in targets.items()}
    rows = []
    for level in [int(x) for x in args.levels.split(",")]:
        runs: dict[str, list[dict]] = {t: [] for t in targets}
        for _ in range(args.repeats):
            for name, (_, model) in targets.items():
                call = lambda seed, c=clients[name], m=model: openai_request(c, m, args.max_tokens, seed)  # noqa: E731
                runs[name].append(await run_level(name, call, level, args.rounds))
        rows += [median_row(r) for r in runs.values()]
        print_table(rows)
    for client in clients.values():
        await client.close()
    return rows


def ratio_rows(rows: list[dict]) -> list[dict]:
    out = []
    for level in sorted({r["concurrency"] for r in rows}):
        at = {r["target"]: r for r in rows if r["concurrency"] == level}
        own = at["vllm-server"]
        row = {"concurrency": level}
        for name in ("gateway-vllm", "gateway-vllm-before", "gateway-vllm-nice0", "serve-llm"):
            if name in at:
                key = name.replace("-", "_")
                row[f"{key}_vs_vllm_server_aggregate"] = at[name]["aggregate_tok_s"] / own["aggregate_tok_s"]
                row[f"{key}_ttft_p50_added_ms"] = at[name]["ttft_p50_ms"] - own["ttft_p50_ms"]
        if "serve-llm" in at:
            peer = at["serve-llm"]
            row["gateway_vllm_vs_serve_llm_aggregate"] = at["gateway-vllm"]["aggregate_tok_s"] / peer["aggregate_tok_s"]
            row["gateway_vllm_minus_serve_llm_ttft_p50_ms"] = at["gateway-vllm"]["ttft_p50_ms"] - peer["ttft_p50_ms"]
        for lowered in (name for name in at if name.startswith("vllm-server-nice")):  # the gateway vs it
            key, ours, theirs = lowered.replace("-", "_"), at["gateway-vllm"], at[lowered]
            row[f"gateway_vllm_vs_{key}_aggregate"] = ours["aggregate_tok_s"] / theirs["aggregate_tok_s"]
            row[f"gateway_vllm_minus_{key}_ttft_p50_ms"] = ours["ttft_p50_ms"] - theirs["ttft_p50_ms"]
        if "gateway-transformers" in at:
            row["gateway_vllm_vs_gateway_transformers_aggregate"] = (
                at["gateway-vllm"]["aggregate_tok_s"] / at["gateway-transformers"]["aggregate_tok_s"])
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--api-key", default="bench-secret")
    parser.add_argument("--out", default=str(RESULTS / "vllm_chat.json"))
    parser.add_argument("--before", action="store_true",
                        help="add gateway-vllm-before: the gateway as it was before issue 17's levers (every engine "
                             "step its own item, Ray's defaults for config/serve.env); drops gateway-transformers")
    parser.add_argument("--nice0", action="store_true",
                        help="add gateway-vllm-nice0: compute_nice 0 (as before); drops gateway-transformers")
    parser.add_argument("--server-nice", type=int,
                        help="add vllm-server-niceN: a second vLLM server N nice levels down (Ray starts its workers "
                             "at 15); drops gateway-transformers")
    parser.add_argument("--serve-llm", action="store_true",
                        help="add serve-llm, Ray Serve LLM's own OpenAI app; drops gateway-transformers")
    parser.add_argument("--haproxy", action="store_true",
                        help="the gateway behind HAProxy, as cluster.yaml starts it; drops gateway-transformers")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    from deployments import model_source
    from serve_app.config import AppArgs
    from tests.support.models import app_args
    from tests.support.servers import SERVE_ENV, ServeRun, free_port

    config_path = VLLM_CONFIG
    chat = next(m for m in AppArgs.model_validate(app_args(config_path)).models if m.id == CHAT)
    path = model_source.as_transformers_checkpoint(model_source.resolve(chat.source))
    workdir = Path(tempfile.mkdtemp())
    with contextlib.ExitStack() as stack:
        own = stack.enter_context(vllm_server(path, chat.engine_options, free_port(), workdir / "vllm.log"))
        vllm_only = args.serve_llm or args.nice0 or args.server_nice is not None or args.haproxy
        gateway = ServeRun([args.api_key], workdir / "serve.log", config_path,
                           tweak=vllm_only_config if vllm_only else bench_config)
        if args.haproxy:
            gateway.env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        gateway = stack.enter_context(gateway)
        targets = {"gateway-vllm": (gateway.url, CHAT), "vllm-server": (own, CHAT)}
        if not vllm_only:
            targets["gateway-transformers"] = (gateway.url, TRANSFORMERS)
        if args.before:
            before = ServeRun([args.api_key], workdir / "serve-before.log", config_path, tweak=before_config)
            for name in SERVE_ENV:  # Ray's defaults instead of config/serve.env
                before.env.pop(name, None)
            targets = {"gateway-vllm": targets["gateway-vllm"],
                       "gateway-vllm-before": (stack.enter_context(before).url, CHAT), "vllm-server": (own, CHAT)}
        if args.nice0:
            nice0 = ServeRun([args.api_key], workdir / "serve-nice0.log", config_path, tweak=nice0_config)
            targets["gateway-vllm-nice0"] = (stack.enter_context(nice0).url, CHAT)
        if args.server_nice is not None:
            lowered = stack.enter_context(vllm_server(path, chat.engine_options, free_port(),
                                                      workdir / "vllm-nice.log", nice=args.server_nice))
            targets[f"vllm-server-nice{args.server_nice}"] = (lowered, CHAT)
        if args.serve_llm:
            url = stack.enter_context(peer(path, CHAT, chat.engine_options, free_port(), workdir / "serve-llm.log"))
            targets["serve-llm"] = (url, CHAT)
        rows = asyncio.run(measure(targets, args))
    report(args, rows, ratio_rows(rows))


if __name__ == "__main__":
    main()
