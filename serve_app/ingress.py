"""The ingress deployment: builds the gateway app on each replica around handles to the model deployments."""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.args import APIKey, AppArgs
from serve_app.backends import LimiterBackend, SpeechBackend, TextBackend
from serve_app.gateway import create_gateway
from serve_app.metrics import GatewayMetrics
from serve_app.replica_status import ReplicaStatus
from serve_app.routing import ModelRegistry
from serve_app.security.auth import KeyStore


@serve.ingress()
class Gateway:
    def __init__(self, args: dict, keys: list[dict], handles: dict[str, DeploymentHandle],
                 limiter: DeploymentHandle) -> None:
        self.args = AppArgs.model_validate(args)
        self.keys = KeyStore([APIKey.model_validate(k) for k in keys], self.args.rate_limits)
        self.limiter = LimiterBackend(limiter)
        self.registry = ModelRegistry.from_config(self.args.models, {
            m.id: SpeechBackend(handles[m.id]) if m.kind == "speech" else TextBackend(handles[m.id])
            for m in self.args.models
        }, self.args.limits, ReplicaStatus())

    def __serve_build_asgi_app__(self):
        return create_gateway(self.registry, self.keys, self.args.limits, self.limiter, GatewayMetrics(),
                              behind_serve_proxy=True)
