"""Application builder: the only place deployments are declared and bound (`serve run config/<name>.yaml`)."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from serve_app.args import AppArgs, ModelConfig
from serve_app.ingress import Gateway
from serve_app.security.auth import ENV_VAR, keys_from_env
from serve_app.security.rate_limit import RateLimiterServer

# Defaults for the CPU-only gateway; model deployments take theirs from the YAML.
GATEWAY_DEFAULTS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.1},
    "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64},
    "max_ongoing_requests": 256,
}


def _bind_model(config: ModelConfig) -> Application:
    """One deployment per model; a speech model also gets a CPU coordinator in front of its replicas."""
    options = config.deployment.as_serve_options()
    if config.kind != "speech":
        from deployments.text import TextModelServer

        return serve.deployment(TextModelServer, name=config.deployment_name).options(**options).bind(
            config.model_dump())
    from deployments.speech import SpeechModelServer
    from deployments.speech_coordinator import SpeechCoordinator

    workers = serve.deployment(SpeechModelServer, name=config.deployment_name).options(**options).bind(
        config.model_dump())
    coordinator = serve.deployment(SpeechCoordinator, name=config.deployment_name + "-coordinator").options(
        **config.splitting.deployment.as_serve_options())
    return coordinator.bind(config.model_dump(), workers)


def build_app(raw_args: dict[str, Any]) -> Application:
    args = AppArgs.model_validate(raw_args)
    keys = list(args.api_keys) + keys_from_env()
    if not keys:
        raise ValueError(f"No API secret configured. Set {ENV_VAR} (comma-separated secrets) and start again.")
    handles = {m.id: _bind_model(m) for m in args.models}
    options = {**GATEWAY_DEFAULTS, **args.ingress.deployment.as_serve_options()}
    if "num_replicas" in args.ingress.deployment.as_serve_options():
        options.pop("autoscaling_config")  # a fixed count replaces autoscaling
    gateway = serve.deployment(Gateway, name="gateway").options(**options)
    # One replica on purpose: it is the single place every gateway replica's rate limits are counted.
    limiter = serve.deployment(RateLimiterServer, name="rate-limiter").options(
        num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000).bind()
    return gateway.bind(args.model_dump(), [k.model_dump() for k in keys], handles, limiter)
