"""Where the state lives (resolved once, by the process that builds the app) and the objects built on it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serve_app.config import StateConfig
from serve_app.state.batches import BatchRepository
from serve_app.state.cache import CacheStorage
from serve_app.state.files import FileRepository, FileStorage
from serve_app.state.ledger import UsageLedger
from serve_app.state.responses import ResponseRepository
from serve_app.state.store import StateStore

STATE_DIR_ENV = "ENDPOINT_STATE_DIR"
STATE_URL_ENV = "ENDPOINT_STATE_URL"


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(STATE_DIR_ENV) or Path.home() / ".cache" / "ray-openai-endpoint" / "state").absolute()


def resolve(config: StateConfig, environ: Mapping[str, str] = os.environ) -> StateConfig:
    """Fill in the defaults: the YAML's URL, else ENDPOINT_STATE_URL, else SQLite under the state folder; file
    bytes beside it unless `files_url` says otherwise."""
    folder = state_dir(environ)
    url = config.url or environ.get(STATE_URL_ENV) or f"sqlite:///{folder / 'endpoint.db'}"
    files_url = config.files_url or str(folder / "files")
    return config.model_copy(update={"url": url, "files_url": files_url})


def check(config: StateConfig, hosts: int = 1) -> None:
    """What every replica would fail on when it opens the resolved store, refused once by the builder: a URL of
    another kind, SQLite in memory, a files_url whose fsspec driver is not installed; and SQLite on a cluster of
    `hosts` machines, where each replica would open its own host's file (its own files, batches and usage)."""
    try:
        store = StateStore(config.url)  # builds engine objects only: nothing connects
        FileStorage(config.files_url)
    except (ValueError, ImportError) as exc:
        raise ValueError(f"state: {exc}") from None
    if store.is_sqlite and hosts > 1:
        raise ValueError(f"state: this Ray cluster spans {hosts} machines (counting one for GPU replicas when no node "
                         "it has now offers a GPU: they will run elsewhere, or never if Ray was started without "
                         "GPUs), and a SQLite file lives on one. Set state.url in the config (or "
                         f"{STATE_URL_ENV} where the app is built) to a PostgreSQL database every node can reach.")


def cluster_hosts(wants_gpus: bool = False) -> int:
    """Machines in the Ray cluster this process belongs to (1 outside one): nodes of one host share its disk. When
    replicas want GPUs and no live node has one, they will run on a machine still to come (cluster.yaml's GPU
    workers boot minutes after the head, where the app is built), so that machine counts too."""
    import ray

    if not ray.is_initialized():
        return 1
    alive = [node for node in ray.nodes() if node.get("Alive")]
    hosts = len({node["NodeManagerAddress"] for node in alive}) or 1
    if wants_gpus and not any(node.get("Resources", {}).get("GPU") for node in alive):
        hosts += 1
    return hosts


@dataclass
class State:
    store: StateStore
    ledger: UsageLedger
    cache: CacheStorage
    files: FileRepository
    batches: BatchRepository
    config: StateConfig
    responses: ResponseRepository

    @classmethod
    def open(cls, config: StateConfig) -> State:
        """Builds the objects; nothing connects until first use (a store that is down does not stop the app)."""
        config = resolve(config)
        store = StateStore(config.url)
        return cls(store, UsageLedger(store, config.usage_flush_interval_s, config.usage_buffer_rows),
                   CacheStorage(store, config.cache_max_entries),
                   FileRepository(store, FileStorage(config.files_url)), BatchRepository(store), config,
                   ResponseRepository(store, config.responses_ttl_days * 86400))

    async def close(self) -> None:
        """Flush what is queued, then close connections (a graceful stop loses no usage rows)."""
        await self.ledger.close()
        await self.cache.drain()
        await self.store.dispose()
