"""faster-whisper's compute threads (CTranslate2's, started with the model) run below the request path."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.models import REPO

# A fresh interpreter: in this one, other engines' threads are lowered too and would be counted.
SCRIPT = """
import asyncio, json, os
import numpy as np
from deployments import model_source
from deployments.engines.options import WhisperOptions
from deployments.engines.whisper_engine import WhisperEngine
from serve_app.config import ModelConfig
from serve_app.protocol.audio import TranscriptionRequest
from tests.support.models import SPEECH_MODEL, app_args

config = ModelConfig.model_validate(next(m for m in app_args()["models"] if m["id"] == SPEECH_MODEL))
# no VAD: the noise must reach the model, so its OpenMP workers exist when counted
options = WhisperOptions(**{**config.engine_options, "vad_filter": False, "beam_size": 1})
engine = WhisperEngine(model_source.resolve(config.source), options)
noise = (np.random.default_rng(0).standard_normal(16000 * 2) * 0.01).astype(np.float32)
asyncio.run(engine.transcribe_samples(noise, 0.0, TranscriptionRequest(model=SPEECH_MODEL)))
own = os.getpriority(os.PRIO_PROCESS, os.getpid())
nices = [os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir("/proc/self/task")]
print(json.dumps({"own": own, "nices": nices, "nice": options.compute_nice, "threads": options.cpu_threads}))
"""


def test_ctranslate2_threads_run_below_the_replica_loop():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=REPO,
                         check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    lowered = min(19, result["own"] + result["nice"])
    assert result["nice"] > 0  # config/cpu.yaml asks for it
    assert result["nices"].count(lowered) >= result["threads"]  # the worker and its OpenMP team
    assert result["nices"].count(result["own"]) >= 1  # the main thread (the replica's event loop) keeps its own
