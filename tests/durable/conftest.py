"""`serve run` of the CPU default's chat model with its state on SQLite and then on PostgreSQL: each test in
this package runs once per store, and the last one restarts the application on the same store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from openai import OpenAI

from serve_app.security.auth import hash_key
from tests.support.keys import API_KEY, OTHER_KEY
from tests.support.models import CHAT_MODEL, EMBEDDING_MODEL
from tests.support.servers import ServeRun, warm_up_chat

ADMIN = "durable-admin-" + "6a1f"
BUDGET = "durable-budget-" + "2c7e"
BUDGET_TOKENS_PER_DAY = 60


def durable_config(config: dict) -> None:
    """The chat and embedding models alone (fast to start), two gateway replicas sharing the store, an admin
    key and a key with a small daily token budget."""
    args = config["applications"][0]["args"]
    args["models"] = [m for m in args["models"] if m["id"] in (CHAT_MODEL, EMBEDDING_MODEL)]
    args["ingress"] = {"deployment": {"num_replicas": 2}}
    args["api_keys"] = [{"name": "ops", "sha256": hash_key(ADMIN), "admin": True},
                        {"name": "budget", "sha256": hash_key(BUDGET),
                         "budgets": {"tokens_per_day": BUDGET_TOKENS_PER_DAY}}]


@dataclass
class Durable:
    """The running application and how to start it again on the same store."""

    store: str
    env: dict[str, str]
    log_dir: Path
    server: ServeRun | None = None
    starts: int = field(default=0)

    def start(self) -> None:
        self.starts += 1
        self.server = ServeRun([API_KEY, OTHER_KEY], self.log_dir / f"serve-{self.starts}.log",
                               tweak=durable_config)
        self.server.env.update(self.env)
        self.server.__enter__()
        try:
            warm_up_chat(self.server.url, API_KEY, CHAT_MODEL)
        except Exception:
            print(self.server.log_tail())
            raise

    def stop(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, key: str = API_KEY) -> OpenAI:
        return OpenAI(api_key=key, base_url=self.url + "/v1", max_retries=0, timeout=120)


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
def durable(request, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp(f"durable-{request.param}")
    if request.param == "sqlite":
        env = {"ENDPOINT_STATE_DIR": str(log_dir / "state")}
    else:  # the URL by environment, as a cluster would set it
        postgres = request.getfixturevalue("postgres")
        env = {"ENDPOINT_STATE_URL": postgres.create_database("durable").replace("+asyncpg", ""),
               "ENDPOINT_STATE_DIR": str(log_dir / "state")}  # file bytes stay on this machine
    running = Durable(request.param, env, log_dir)
    running.start()
    yield running
    running.stop()
