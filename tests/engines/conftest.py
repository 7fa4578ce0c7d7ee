"""Engines on real weights, in-process; each lives for this package only."""

from __future__ import annotations

import pytest

from deployments import model_source
from deployments.engines.options import HFEngineOptions
from tests.support.models import SMOLLM2_SOURCE, TINY_VLM_SOURCE

ENGINE_OPTIONS = HFEngineOptions(max_batch_size=8, torch_threads=2)


@pytest.fixture(scope="package")
def smollm_path() -> str:
    return model_source.as_transformers_checkpoint(model_source.resolve(SMOLLM2_SOURCE))


@pytest.fixture(scope="package")
def tiny_vlm_path() -> str:
    return model_source.resolve(TINY_VLM_SOURCE)


@pytest.fixture(scope="package")
def hf_engine(smollm_path):
    from deployments.engines.hf.engine import HFTextEngine

    engine = HFTextEngine(smollm_path, ENGINE_OPTIONS)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="package")
def vlm_engine(tiny_vlm_path):
    from deployments.engines.hf.engine import HFTextEngine

    engine = HFTextEngine(tiny_vlm_path, ENGINE_OPTIONS, multimodal=True)
    yield engine
    engine.shutdown()
