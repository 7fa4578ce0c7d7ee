"""The ingress deployment: builds the gateway app on each replica around handles to the model deployments."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette

from serve_app.config import APIKey, AppArgs
from serve_app.gateway.asgi import build_gateway
from serve_app.gateway.backends import LimiterBackend, backend_for
from serve_app.gateway.metrics import GatewayMetrics
from serve_app.gateway.scale_to_zero import ReplicaStatus
from serve_app.state.setup import State

# The gateway is CPU-only and light; the YAML's `ingress.deployment` overrides these.
DEFAULT_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.1},
    "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64},
    "max_ongoing_requests": 256,
}


@serve.ingress()
class GatewayIngress:
    def __init__(self, args: dict, keys: list[dict], handles: dict[str, DeploymentHandle],
                 limiter: DeploymentHandle, batch_runner: DeploymentHandle) -> None:
        self.args = AppArgs.model_validate(args)
        self.keys = [APIKey.model_validate(k) for k in keys]
        self.limiter = LimiterBackend(limiter)
        self.batch_runner = batch_runner
        self.backends = {m.id: backend_for(m.kind, handles[m.id]) for m in self.args.models}

    async def _wake_runner(self) -> None:
        await self.batch_runner.wake.remote()

    def __serve_build_asgi_app__(self) -> Starlette:
        return build_gateway(self.args, self.keys, self.backends, self.limiter, state=State.open(self.args.state),
                             metrics=GatewayMetrics(), status=ReplicaStatus(), behind_serve_proxy=True,
                             wake_runner=self._wake_runner)
