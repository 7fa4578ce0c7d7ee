"""Our own counters and histograms, exported through Ray's metrics system (Prometheus endpoint, dashboard).

Tags name the key (never its secret) and the model, so operators can see who uses what.
"""

from __future__ import annotations

from typing import Protocol

_LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900]
_TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]


class Metrics(Protocol):
    def record(self, key: str, model: str, route: str, status: int, usage: dict, latency: float,
               ttft: float | None) -> None: ...


class GatewayMetrics:
    def __init__(self) -> None:
        from ray.util.metrics import Counter, Histogram  # only where Ray runs: the Serve replicas

        self.requests = Counter("endpoint_requests", "Requests by key, model, route and HTTP status.",
                                tag_keys=("key", "model", "route", "status"))
        self.tokens = Counter("endpoint_tokens", "Chat tokens by key, model and kind (prompt or completion).",
                              tag_keys=("key", "model", "kind"))
        self.audio_seconds = Counter("endpoint_audio_seconds", "Seconds of audio transcribed.",
                                     tag_keys=("key", "model"))
        self.images = Counter("endpoint_images", "Images received in chat messages.", tag_keys=("key", "model"))
        self.rate_limited = Counter("endpoint_rate_limited", "Requests refused by a rate limit.",
                                    tag_keys=("key", "route"))
        self.latency = Histogram("endpoint_request_latency_seconds", "Time to the end of the response.",
                                 boundaries=_LATENCY_BUCKETS, tag_keys=("key", "model", "route"))
        self.ttft = Histogram("endpoint_time_to_first_token_seconds", "Streamed chat: time to the first token.",
                              boundaries=_TTFT_BUCKETS, tag_keys=("key", "model"))

    def record(self, key: str, model: str, route: str, status: int, usage: dict, latency: float,
               ttft: float | None) -> None:
        self.requests.inc(1, {"key": key, "model": model, "route": route, "status": str(status)})
        if status == 429:
            self.rate_limited.inc(1, {"key": key, "route": route})
        for kind in ("prompt", "completion"):
            if usage.get(f"{kind}_tokens"):
                self.tokens.inc(usage[f"{kind}_tokens"], {"key": key, "model": model, "kind": kind})
        if usage.get("audio_seconds"):
            self.audio_seconds.inc(usage["audio_seconds"], {"key": key, "model": model})
        if usage.get("images"):
            self.images.inc(usage["images"], {"key": key, "model": model})
        self.latency.observe(latency, {"key": key, "model": model, "route": route})
        if ttft is not None:
            self.ttft.observe(ttft, {"key": key, "model": model})


class NoMetrics:
    """For the gateway served without Ray (in-process tests)."""

    def record(self, *args, **kwargs) -> None:
        return None
