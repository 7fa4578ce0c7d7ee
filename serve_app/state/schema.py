"""The state store's tables (SQLAlchemy Core). Changing them means a new migration under migrations/versions.

Times are integers: unix seconds where OpenAI shows them (files, batches), milliseconds in the ledger so
buckets are exact integer arithmetic on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()
# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

usage_events = Table(
    "usage_events", metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("key_name", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("route", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("audio_seconds", Float, nullable=False, default=0.0),
    Column("images", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False),
    Column("cached", Boolean, nullable=False, default=False),
    Column("batch_id", String(64), nullable=True),
    Index("ix_usage_events_ts", "ts_ms"),
    Index("ix_usage_events_key_ts", "key_name", "ts_ms"),
)

files = Table(
    "files", metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("filename", String(512), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("location", String(1024), nullable=False),  # the object's name under the files URL
    Index("ix_files_owner_created", "owner", "created_at"),
)

batches = Table(
    "batches", metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(64), nullable=False),
    Column("completion_window", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("in_progress_at", BigInteger),
    Column("finalizing_at", BigInteger),
    Column("completed_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("expired_at", BigInteger),
    Column("cancelling_at", BigInteger),
    Column("cancelled_at", BigInteger),
    Column("output_file_id", String(64)),
    Column("error_file_id", String(64)),
    Column("total", Integer, nullable=False, default=0),
    Column("completed", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    # tokens of the lines recorded so far (prompt, and completion), OpenAI's Batch `usage`
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("metadata_json", Text),
    Column("errors_json", Text),
    Index("ix_batches_owner_created", "owner", "created_at"),
    Index("ix_batches_status", "status"),
)

# One row per finished batch line: the runner skips these after a restart, so no line runs twice.
batch_results = Table(
    "batch_results", metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("ok", Boolean, nullable=False),
    Column("payload", Text, nullable=False),  # the output (or error) JSONL line
)

response_cache = Table(
    "response_cache", metadata,
    Column("key", String(64), primary_key=True),  # sha256 of scope, model identity and normalised request
    Column("model", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_response_cache_expires", "expires_at"),
    Index("ix_response_cache_created", "created_at"),
)

# Stored responses (POST /v1/responses with `store`): the response object, and the input items it was answered
# from (the whole conversation before it, so continuing one never walks a chain of rows).
responses = Table(
    "responses", metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("model", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_json", Text, nullable=False),
    Column("input_json", Text, nullable=False),
    Index("ix_responses_owner_created", "owner", "created_at"),
)
