"""Alembic environment: migrations run on the connection the store hands over (store._upgrade), so the gateway
upgrades the schema itself on first use, one process at a time; no alembic.ini or manual step."""

from __future__ import annotations

from alembic import context

from serve_app.state.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
