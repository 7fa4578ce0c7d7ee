"""Application builder: the only place deployments are declared and bound (`serve run config/<name>.yaml`)."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from serve_app.args import AppArgs, ModelConfig
from serve_app.ingress import Gateway
from serve_app.security.auth import ENV_VAR, key_hashes_from_env

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
    key_hashes = list(args.api_key_hashes) + key_hashes_from_env()
    if not key_hashes:
        raise ValueError(f"No API secret configured. Set {ENV_VAR} (comma-separated secrets) and start again.")
    handles = {m.id: _bind_model(m) for m in args.models}
    options = {**GATEWAY_DEFAULTS, **args.ingress.deployment.as_serve_options()}
    if "num_replicas" in args.ingress.deployment.as_serve_options():
        options.pop("autoscaling_config")  # a fixed count replaces autoscaling
    gateway = serve.deployment(Gateway, name="gateway").options(**options)
    return gateway.bind(args.model_dump(), key_hashes, handles)
