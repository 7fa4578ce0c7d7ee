"""The YAML config builds the application graph (no Ray cluster, no engines started)."""

from __future__ import annotations

import os
import subprocess

import pytest

from serve_app.app import build_app
from tests.servers import CPU_CONFIG, REPO, app_args


def test_refuses_to_build_without_a_secret(monkeypatch):
    monkeypatch.delenv("ENDPOINT_API_KEYS", raising=False)
    with pytest.raises(ValueError, match="ENDPOINT_API_KEYS"):
        build_app(app_args(CPU_CONFIG))


def test_builds_gateway_bound_to_one_deployment_per_model(monkeypatch):
    monkeypatch.setenv("ENDPOINT_API_KEYS", "k1,k2")
    app = build_app(app_args(CPU_CONFIG))
    gateway = app._bound_deployment
    assert gateway.name == "gateway"
    args, keys, handles, limiter = gateway.init_args
    assert [k["name"] for k in keys] == ["env-1", "env-2"]
    assert "k1" not in str(keys)  # only digests leave the driver
    assert limiter._bound_deployment.name == "rate-limiter" and limiter._bound_deployment.num_replicas == 1
    assert sorted(handles) == ["smollm2-135m-instruct", "tiny-random-vlm", "whisper-tiny.en"]
    vision = handles["tiny-random-vlm"]._bound_deployment
    assert vision.name == "model-tiny-random-vlm" and vision.func_or_class.__name__ == "TextModelServer"
    text = handles["smollm2-135m-instruct"]._bound_deployment
    assert text.name == "model-smollm2-135m-instruct"
    assert text._deployment_config.autoscaling_config.max_replicas == 2
    assert text.ray_actor_options["num_cpus"] == 0.5


def test_make_run_refuses_without_a_secret():
    env = {k: v for k, v in os.environ.items() if k != "ENDPOINT_API_KEYS"}
    out = subprocess.run(["make", "-s", "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert "ENDPOINT_API_KEYS is not set" in out.stdout + out.stderr


def test_grafana_dashboard_queries_the_metrics_the_gateway_exports():
    import json
    import re

    import serve_app.metrics as metrics_module

    exported = set(re.findall(r'"(endpoint_[a-z_]+)"', open(metrics_module.__file__).read()))
    dashboard = json.loads((REPO / "config" / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"ray_(endpoint_[a-z_]+?)(?:_bucket|\(|\{|_total)", target["expr"])}
    assert queried and queried <= exported, queried - exported
    assert exported - {"endpoint_images"} <= queried  # every metric but images has a panel
