"""Resolve a configured model source to something an engine can load, converting GGUF once into a cache."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from serve_app.args import ModelSource

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("ENDPOINT_CACHE_DIR", Path.home() / ".cache" / "ray-openai-endpoint"))


def resolve(source: ModelSource) -> str:
    """Local path for package/path sources; the hub id itself for hub sources (the engine downloads it)."""
    if source.hub is not None:
        return source.hub
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
    target = cache_root() / "converted" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several replicas may start at once: one converts, the others wait on the lock and reuse it.
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _convert_gguf(gguf, target)
    return str(target)


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
