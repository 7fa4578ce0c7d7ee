"""Application builder: the only place deployments are declared and bound (`serve run config/<name>.yaml`),
and the only module of serve_app that imports `deployments`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from ray import serve
from ray.serve import Application

from deployments.engines.options import parse_engine_options
from serve_app.batches.runner import DEPLOYMENT_OPTIONS as RUNNER_OPTIONS
from serve_app.batches.runner import BatchRunner
from serve_app.config import AppArgs, ModelConfig
from serve_app.gateway.ingress import DEFAULT_OPTIONS as GATEWAY_DEFAULTS
from serve_app.gateway.ingress import GatewayIngress
from serve_app.security.auth import ENV_VAR, KeyStore, keys_from_env
from serve_app.security.rate_limit import DEPLOYMENT_OPTIONS as LIMITER_OPTIONS
from serve_app.security.rate_limit import RateLimiterServer
from serve_app.state.setup import check as check_state
from serve_app.state.setup import cluster_hosts, resolve


def check_engine_options(config: ModelConfig) -> None:
    """Refuse a typo in `engine_options` now, not as a replica crash loop (vLLM's own arguments are checked
    when its replica starts: the builder's machine need not have vLLM)."""
    try:
        options = parse_engine_options(config.engine, config.engine_options, config.kind)
    except ValidationError as exc:
        raise ValueError(f"model {config.id!r}: invalid engine_options for {config.engine}: {exc}") from None
    # Ray hides a node's GPUs from a replica only once it asks for some; without num_gpus the engine would find
    # no GPU (or take one that another replica was given).
    if getattr(options, "device", None) == "cuda" and not config.wants_gpus:
        raise ValueError(f"model {config.id!r}: engine_options.device is cuda, but deployment.ray_actor_options "
                         "asks for no num_gpus, so Ray gives its replicas no GPU")


# Replica classes are imported where they are bound: the machine that builds the app (a cluster's head)
# needs only the gateway's dependencies, not the audio decoders or engines the replicas bring.


def bind_text_model(config: ModelConfig) -> Application:
    from deployments.text import TextModelServer

    return serve.deployment(TextModelServer, name=config.deployment_name).options(
        **config.deployment.as_serve_options()).bind(config.model_dump())


def bind_embedding_model(config: ModelConfig) -> Application:
    from deployments.embedding import EmbeddingModelServer

    return serve.deployment(EmbeddingModelServer, name=config.deployment_name).options(
        **config.deployment.as_serve_options()).bind(config.model_dump())


def bind_speech_model(config: ModelConfig) -> Application:
    """The replicas that transcribe chunks, behind a CPU coordinator that decodes and cuts the upload."""
    from deployments.speech import SpeechModelServer
    from deployments.speech_coordinator import SpeechCoordinator

    workers = serve.deployment(SpeechModelServer, name=config.deployment_name).options(
        **config.deployment.as_serve_options()).bind(config.model_dump())
    coordinator = serve.deployment(SpeechCoordinator, name=config.deployment_name + "-coordinator").options(
        **config.splitting.deployment.as_serve_options())
    return coordinator.bind(config.model_dump(), workers)


BINDERS = {"text": bind_text_model, "multimodal": bind_text_model, "embedding": bind_embedding_model,
           "speech": bind_speech_model}


def build_app(raw_args: dict[str, Any]) -> Application:
    args = AppArgs.model_validate(raw_args)
    # Where the state lives is decided here, from this process's environment, so every replica agrees.
    args = args.model_copy(update={"state": resolve(args.state)})
    check_state(args.state, cluster_hosts(wants_gpus=any(m.wants_gpus for m in args.models)))
    keys = list(args.api_keys) + keys_from_env()
    if not keys:
        raise ValueError(f"No API secret configured. Set {ENV_VAR} (comma-separated secrets) and start again.")
    KeyStore(keys)  # refuses names given twice (config and environment together) before any replica starts
    for model in args.models:
        check_engine_options(model)
    handles = {m.id: BINDERS[m.kind](m) for m in args.models}
    configured = args.ingress.deployment.as_serve_options()
    options = {**GATEWAY_DEFAULTS, **configured}
    if "num_replicas" in configured:
        options.pop("autoscaling_config")  # a fixed count replaces autoscaling
    gateway = serve.deployment(GatewayIngress, name="gateway").options(**options)
    limiter = serve.deployment(RateLimiterServer, name="rate-limiter").options(**LIMITER_OPTIONS).bind()
    key_dicts = [k.model_dump() for k in keys]
    runner = serve.deployment(BatchRunner, name="batch-runner").options(**RUNNER_OPTIONS).bind(
        args.model_dump(), key_dicts, handles, limiter)
    return gateway.bind(args.model_dump(), key_dicts, handles, limiter, runner)
