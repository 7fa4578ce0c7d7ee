"""The least an HTTP server can do for `bench.gateway_overhead`'s load: the floor under the endpoint's figures.

The same token stream as the synthetic engine (one token per 1/rate s, merged over the shipped
`stream_interval`), sent as SSE chunks the bench's client counts, with no auth, limits, validation or OpenAI
objects: a raw ASGI app. Three shapes, the bench's `bare=<hops>` variant:
- hops 0: that app on uvicorn in one process, no Ray (`python -m bench.bare_serve_app --port N`);
- hops 1: that app as a Ray Serve ingress deployment (proxy -> replica), emitting itself;
- hops 2: the ingress streams from a second deployment through a handle (proxy -> ingress -> emitter), the
  endpoint's own shape.
The Serve deployments carry the endpoint's names (`gateway`, `model-synthetic-stream`) so the bench's
per-process CPU roles apply unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable

from deployments.step_pacing import stream_interval

INTERVAL_S, ITEMS_PER_S = 0.02, 1000  # the shipped text-model pacing (serve_app.config defaults)


class Emitter:
    """Tokens at `rate` per stream: the first at once, then what was due during each interval as one piece."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.running = 0

    async def stream(self, tokens: int) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        self.running += 1
        try:
            start = loop.time()
            await asyncio.sleep(1 / self.rate)
            sent = 1
            yield "tok "
            while sent < tokens:
                await asyncio.sleep(stream_interval(INTERVAL_S, self.running, ITEMS_PER_S))
                due = min(tokens, int((loop.time() - start) * self.rate))
                if due > sent:
                    yield "tok " * (due - sent)
                    sent = due
        finally:
            self.running -= 1


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_app(source: Callable[[int], AsyncIterator[str]]):
    """POST any path with {"max_tokens": N}: N tokens as chat-completion-shaped SSE chunks, a usage chunk,
    [DONE]. GET /health: 200 (what the bench's servers wait for)."""

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        tokens = int(json.loads(body or b"{}").get("max_tokens", 16))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        async for text in source(tokens):
            chunk = _sse({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        tail = _sse({"object": "chat.completion.chunk", "choices": [], "usage": {"completion_tokens": tokens}})
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})

    return app


def build_app(args: dict):
    """`import_path: bench.bare_serve_app:build_app`, args {hops: 1|2, rate: tokens/s per stream}."""
    from ray import serve

    rate = float(args.get("rate", 100))

    if int(args.get("hops", 2)) == 1:
        @serve.deployment(name="gateway", max_ongoing_requests=2048, ray_actor_options={"num_cpus": 0})
        @serve.ingress()
        class OneHop:
            def __serve_build_asgi_app__(self):
                return sse_app(Emitter(rate).stream)

        return OneHop.bind()

    @serve.deployment(name="model-synthetic-stream", max_ongoing_requests=1024, ray_actor_options={"num_cpus": 0})
    class EmitterDeployment(Emitter):
        pass

    @serve.deployment(name="gateway", max_ongoing_requests=2048, ray_actor_options={"num_cpus": 0})
    @serve.ingress()
    class TwoHops:
        def __init__(self, emitter) -> None:
            self.emitter = emitter.options(stream=True)

        def __serve_build_asgi_app__(self):
            return sse_app(lambda tokens: self.emitter.stream.remote(tokens))

    return TwoHops.bind(EmitterDeployment.bind(rate))


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="hops 0: the bare app on uvicorn, no Ray")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    uvicorn.run(sse_app(Emitter(args.rate).stream), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
