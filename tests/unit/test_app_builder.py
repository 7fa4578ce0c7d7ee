"""The YAML config builds the application graph (no Ray cluster, no engines started)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from serve_app.app import build_app
from tests.support.models import (
    CHAT_MODEL,
    CPU_CONFIG,
    EMBEDDING_MODEL,
    GPU_CONFIG,
    MULTILINGUAL_SPEECH_MODEL,
    REPO,
    SHIPPED_CONFIGS,
    SPEECH_MODEL,
    VISION_MODEL,
    app_args,
)


def test_refuses_to_build_without_a_secret(monkeypatch):
    monkeypatch.delenv("ENDPOINT_API_KEYS", raising=False)
    with pytest.raises(ValueError, match="ENDPOINT_API_KEYS"):
        build_app(app_args(CPU_CONFIG))


def test_refuses_a_configured_key_named_like_an_environment_secret(monkeypatch):
    monkeypatch.setenv("ENDPOINT_API_KEYS", "alice-secret,bob-secret")
    raw = app_args(CPU_CONFIG)
    raw["api_keys"] = [{"name": "env-2", "sha256": "0" * 64}]  # would be one tenant with bob-secret
    with pytest.raises(ValueError, match="env-2 is used twice"):
        build_app(raw)


def test_builds_gateway_bound_to_one_deployment_per_model(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1,k2")
    monkeypatch.setenv("ENDPOINT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ENDPOINT_STATE_URL", raising=False)
    app = build_app(app_args(CPU_CONFIG))
    gateway = app._bound_deployment
    assert gateway.name == "gateway"
    args, keys, handles, limiter, runner = gateway.init_args
    # the state's location is fixed by the building process, so every replica opens the same store
    assert args["state"]["url"] == f"sqlite:///{tmp_path}/endpoint.db"
    assert args["state"]["files_url"] == f"{tmp_path}/files"
    assert runner._bound_deployment.name == "batch-runner" and runner._bound_deployment.num_replicas == 1
    assert runner._bound_deployment.init_args[2] is handles
    assert [k["name"] for k in keys] == ["env-1", "env-2"]
    assert "k1" not in str(keys)  # only digests leave the driver
    assert limiter._bound_deployment.name == "rate-limiter" and limiter._bound_deployment.num_replicas == 1
    assert sorted(handles) == sorted([CHAT_MODEL, VISION_MODEL, EMBEDDING_MODEL, SPEECH_MODEL,
                                      MULTILINGUAL_SPEECH_MODEL])
    embedding = handles[EMBEDDING_MODEL]._bound_deployment
    assert embedding.name == "model-all-minilm-l6-v2" and embedding.func_or_class.__name__ == "EmbeddingModelServer"
    multilingual = handles[MULTILINGUAL_SPEECH_MODEL]._bound_deployment
    assert multilingual.name == "model-whisper-base-coordinator"
    vision = handles[VISION_MODEL]._bound_deployment
    assert vision.name == "model-tiny-random-vlm" and vision.func_or_class.__name__ == "TextModelServer"
    text = handles[CHAT_MODEL]._bound_deployment
    assert text.name == "model-smollm2-135m-instruct"
    assert text._deployment_config.autoscaling_config.max_replicas == 1  # 2 on 2 cores: slower (bench/RESULTS.md)
    assert text.ray_actor_options["num_cpus"] == 0.5


def test_make_run_refuses_without_a_secret():
    env = {k: v for k, v in os.environ.items() if k != "ENDPOINT_API_KEYS"}
    out = subprocess.run(["make", "-s", "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "ENDPOINT_API_KEYS is not set" in out.stdout + out.stderr
    assert "check-key] Error" in out.stderr  # stopped at the first prerequisite: before any install or serving


def test_grafana_dashboard_queries_the_metrics_the_gateway_exports():
    import json
    import re

    import serve_app.gateway.metrics as metrics_module

    exported = set(re.findall(r'"(endpoint_[a-z_]+)"', open(metrics_module.__file__).read()))
    dashboard = json.loads((REPO / "config" / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"ray_(endpoint_[a-z_]+?)(?:_bucket|\(|\{|_total)", target["expr"])}
    assert queried and queried <= exported, queried - exported
    assert exported - {"endpoint_images"} <= queried  # every metric but images has a panel


def vllm_options_error(model) -> Exception | None:
    """vLLM's own argument names, checked as its replica will at start (the builder does not import vLLM)."""
    from deployments.engines.options import VLLMOptions
    from deployments.engines.vllm_engine import engine_args

    try:
        engine_args("/model", VLLMOptions.model_validate(model.engine_options))
    except Exception as exc:  # noqa: BLE001 (any failure is the finding)
        return exc
    return None


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_builds_its_graph_and_engine_options(monkeypatch, path):
    from serve_app.config import AppArgs

    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1")
    raw = app_args(path)
    args = AppArgs.model_validate(raw)
    _, _, handles, _, _ = build_app(raw)._bound_deployment.init_args  # checks every engine's own options
    assert sorted(handles) == sorted(m.id for m in args.models)
    for model in args.models:
        if model.engine == "vllm":
            assert vllm_options_error(model) is None, (model.id, vllm_options_error(model))


@pytest.mark.parametrize("engine, kind, options, bad", [
    ("transformers", "text", {"max_batch_sise": 8}, "max_batch_sise"),
    ("transformers", "text", {"dtype": "float16"}, "dtype"),
    ("faster-whisper", "speech", {"compute_typ": "int8"}, "compute_typ"),
    ("vllm", "text", {"default_max_tokens": 0}, "default_max_tokens"),
])
def test_engine_option_typos_are_refused_at_build_time(monkeypatch, engine, kind, options, bad):
    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1")
    raw = {"models": [{"id": "m", "kind": kind, "engine": engine, "source": {"hub": "a/b"}, "engine_options": options}]}
    with pytest.raises(ValueError, match=bad) as err:
        build_app(raw)
    assert "'m'" in str(err.value)


@pytest.mark.parametrize("engine, kind, options", [
    ("transformers", "text", {"device": "cuda"}),
    ("transformers", "multimodal", {"device": "cuda", "dtype": "float16"}),
    ("transformers", "embedding", {"device": "cuda"}),
    ("faster-whisper", "speech", {"device": "cuda", "compute_type": "float16"}),
])
def test_a_gpu_engine_without_num_gpus_is_refused_at_build_time(monkeypatch, engine, kind, options):
    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1")
    model = {"id": "m", "kind": kind, "engine": engine, "source": {"hub": "a/b"}, "engine_options": options}
    with pytest.raises(ValueError, match="num_gpus") as err:
        build_app({"models": [model]})
    assert "'m'" in str(err.value)
    model["deployment"] = {"ray_actor_options": {"num_gpus": 1}}
    build_app({"models": [model]})


def test_transformers_options_resolve_auto_from_the_gpu_the_replica_was_given():
    from deployments.engines.options import HFEmbeddingOptions, HFEngineOptions

    cpu, gpu = HFEngineOptions().resolved(given_gpu=False), HFEngineOptions().resolved(given_gpu=True)
    assert (cpu.device, cpu.dtype, cpu.compute_nice) == ("cpu", "float32", 4)
    assert (gpu.device, gpu.dtype, gpu.compute_nice) == ("cuda", "bfloat16", 0)
    named = HFEngineOptions(device="cpu", dtype="bfloat16", compute_nice=2).resolved(given_gpu=True)
    assert (named.device, named.dtype, named.compute_nice) == ("cpu", "bfloat16", 2)  # what the YAML names wins
    assert HFEngineOptions(device="cuda", dtype="float16").resolved(given_gpu=True).dtype == "float16"
    # a GPU older than Ampere has no native bfloat16: float16, as vLLM's auto chooses
    assert HFEngineOptions().resolved(given_gpu=True, gpu_bfloat16=False).dtype == "float16"
    assert HFEngineOptions().resolved(given_gpu=False, gpu_bfloat16=False).dtype == "float32"
    embedding = HFEmbeddingOptions().resolved(given_gpu=True)
    assert (embedding.device, embedding.compute_nice) == ("cuda", 0)


def test_a_replica_that_asked_for_a_gpu_but_sees_none_runs_its_transformers_model_on_the_cpu(caplog):
    """A simulated cluster's nodes declare GPU resources they do not have (tests/cluster): auto falls back."""
    import torch

    from deployments.engines.factory import given_gpu
    from serve_app.config import ModelConfig

    asked = ModelConfig(id="m", kind="text", engine="transformers", source={"hub": "a/b"},
                        deployment={"ray_actor_options": {"num_gpus": 1}})
    assert given_gpu(asked) is torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert "torch sees no GPU" in caplog.text
    assert given_gpu(asked.model_copy(update={"deployment": ModelConfig(id="m", kind="text", engine="transformers",
                                                                         source={"hub": "a/b"}).deployment})) is False


def test_gpu_config_puts_every_model_on_a_gpu_and_the_gateway_on_cpu(monkeypatch):
    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1")
    gateway = build_app(app_args(GPU_CONFIG))._bound_deployment
    assert not gateway.ray_actor_options.get("num_gpus")
    _, _, handles, _, _ = gateway.init_args
    kinds = {}
    for model_id, app in handles.items():
        deployment = app._bound_deployment
        if deployment.name.endswith("-coordinator"):  # speech: the CPU coordinator in front of GPU replicas
            assert not deployment.ray_actor_options.get("num_gpus")
            deployment = deployment.init_args[1]._bound_deployment
        # a whole GPU each, but the small embedding model, which takes a quarter (and 20% of its memory)
        assert deployment.ray_actor_options["num_gpus"] == (0.25 if model_id == "qwen3-embedding-0.6b" else 1)
        assert deployment._deployment_config.autoscaling_config is not None
        kinds[model_id] = deployment.init_args[0]["kind"]
    assert sorted(set(kinds.values())) == ["embedding", "multimodal", "speech", "text"]


def test_unknown_vllm_option_is_refused_by_name():
    from serve_app.config import ModelConfig

    model = ModelConfig(id="m", kind="text", engine="vllm", source={"hub": "a/b"},
                        engine_options={"max_model_len": 4096, "gpu_memory_utilisation": 0.9})
    assert "gpu_memory_utilisation" in str(vllm_options_error(model))


def test_make_run_the_tests_and_the_cluster_read_serve_env_and_the_cluster_adds_haproxy():
    from tests.support.servers import SERVE_ENV, env_file

    assert SERVE_ENV["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "1"
    haproxy = env_file("haproxy.env")
    assert haproxy["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and "RAY_SERVE_ENABLE_HA_PROXY" not in SERVE_ENV

    def make_run(*args: str, command: str = "serve run") -> str:
        shown = subprocess.run(["make", "-n", "--no-print-directory", "run", "ENDPOINT_API_KEYS=x", *args], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.splitlines()
        return next(line for line in shown if command in line)

    assert make_run().startswith("env " + " ".join(f"{k}={v}" for k, v in SERVE_ENV.items()) + " ")
    with_haproxy = {**SERVE_ENV, **haproxy}  # make run HAPROXY=1: on one machine, as clusters run it
    assert make_run("HAPROXY=1").startswith("env " + " ".join(f"{k}={v}" for k, v in with_haproxy.items()) + " ")
    starts = yaml.safe_load((REPO / "cluster.yaml").read_text())
    for command in starts["head_start_ray_commands"][-1:] + starts["worker_start_ray_commands"][-1:]:
        # HAProxy on clusters only, its files in a folder made private before Ray starts
        assert ("install -d -m 700 ~/.ray-haproxy; set -a; . /home/ray/endpoint/config/serve.env; "
                ". /home/ray/endpoint/config/haproxy.env; set +a; ray start") in command
    assert haproxy["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == "${HOME}/.ray-haproxy"
    assert make_run("HAPROXY=1", command="install -d") == "install -d -m 700 $HOME/.ray-haproxy"  # the same folder
    mounted = starts["file_mounts"]["/home/ray/endpoint"]
    assert (REPO / mounted / "config" / "serve.env").is_file() and (REPO / mounted / "config" / "haproxy.env").is_file()


def test_haproxy_env_moves_every_file_ray_keeps_in_tmp_into_the_private_folder():
    """Ray 2.60 keeps HAProxy's admin socket (mode 666, level admin) and config in /tmp/haproxy-serve; a Ray
    upgrade that adds another such path fails here until config/haproxy.env moves it too."""
    from tests.support.servers import env_file

    shown = subprocess.run([sys.executable, "-c", "import json; from ray.serve._private import constants as c; "
                            "print(json.dumps({k: v for k, v in vars(c).items() if isinstance(v, str)}))"],
                           env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True).stdout
    in_tmp = {name for name, value in json.loads(shown).items() if value.startswith("/tmp/haproxy")}
    haproxy = env_file("haproxy.env")
    assert len(in_tmp) == 5 and in_tmp <= haproxy.keys()
    base = haproxy["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    assert all(haproxy[name] == base or haproxy[name].startswith(base + "/") for name in in_tmp)


@pytest.mark.parametrize(("state", "env", "error"), [
    ({"url": "postgresql+psycopg://u@db/x"}, {}, "must be postgresql:// or sqlite:///"),
    ({"url": "sqlite:///:memory:"}, {}, "needs a file"),
    ({"files_url": "s3://bucket/prefix"}, {}, "s3fs"),
    ({}, {"ENDPOINT_STATE_URL": "mysql://u@db/x"}, "must be postgresql:// or sqlite:///"),
])
def test_a_state_store_every_replica_would_fail_to_open_is_refused_when_the_app_is_built(
        monkeypatch, tmp_path, state, env, error):
    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1")
    monkeypatch.setenv("ENDPOINT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ENDPOINT_STATE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    raw = {**app_args(CPU_CONFIG), "state": state}
    with pytest.raises(ValueError, match=error):
        build_app(raw)


def test_sqlite_is_refused_on_a_cluster_of_several_machines_and_kept_on_one(monkeypatch, tmp_path):
    import ray

    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1")
    monkeypatch.setenv("ENDPOINT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ENDPOINT_STATE_URL", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    one_host = [{"Alive": True, "NodeManagerAddress": "10.0.0.1"}, {"Alive": True, "NodeManagerAddress": "10.0.0.1"}]
    monkeypatch.setattr(ray, "nodes", lambda: one_host)  # two raylets on one machine share its disk
    build_app(app_args(CPU_CONFIG))
    monkeypatch.setattr(ray, "nodes", lambda: [*one_host, {"Alive": True, "NodeManagerAddress": "10.0.0.2"}])
    with pytest.raises(ValueError, match="spans 2 machines.*state.url"):
        build_app(app_args(CPU_CONFIG))
    monkeypatch.setenv("ENDPOINT_STATE_URL", "postgresql://endpoint@db.internal/endpoint")
    build_app(app_args(CPU_CONFIG))


def test_sqlite_is_refused_where_gpu_replicas_wait_for_a_machine_the_cluster_does_not_have_yet(monkeypatch, tmp_path):
    """cluster.yaml right after `ray up`: the head (no GPU) is the only live node, its GPU workers still boot."""
    import ray

    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1")
    monkeypatch.setenv("ENDPOINT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ENDPOINT_STATE_URL", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    head = {"Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 8.0}}
    monkeypatch.setattr(ray, "nodes", lambda: [head])
    gpu_args = app_args(GPU_CONFIG)
    with pytest.raises(ValueError, match="spans 2 machines.*no node it has now offers a GPU.*state.url"):
        build_app(gpu_args)
    build_app(app_args(CPU_CONFIG))  # nothing wants a GPU: one machine
    one_gpu_box = {**head, "Resources": {"CPU": 8.0, "GPU": 1.0}}
    monkeypatch.setattr(ray, "nodes", lambda: [one_gpu_box])
    build_app(gpu_args)  # one machine with its GPU: SQLite stays fine
