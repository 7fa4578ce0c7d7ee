"""Files: metadata rows in the store, bytes under a folder or fsspec URL (s3://, gs://, ...) that every gateway
replica and the batch runner can read. Each file belongs to the key that created it."""

from __future__ import annotations

import asyncio
import secrets
import time
from types import SimpleNamespace

import fsspec
from sqlalchemy import and_, delete, func, insert, select

from serve_app.state.schema import files
from serve_app.state.store import StateStore

UPLOAD_PURPOSES = ("batch",)  # what clients may upload; the runner writes `batch_output`


def file_object(row) -> dict:
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": row.created_at,
            "filename": row.filename, "purpose": row.purpose, "status": "processed", "expires_at": None,
            "status_details": None}


class FileStorage:
    """Object bytes by name; blocking fsspec calls run in a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def _path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _write(self, name: str, data: bytes) -> None:
        self.fs.makedirs(self.root, exist_ok=True)
        with self.fs.open(self._path(name), "wb") as out:
            out.write(data)

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, name, data)

    async def get(self, name: str) -> bytes:
        return await asyncio.to_thread(self.fs.cat_file, self._path(name))

    async def delete(self, name: str) -> None:
        def remove() -> None:
            if self.fs.exists(self._path(name)):
                self.fs.rm(self._path(name))

        await asyncio.to_thread(remove)


class FileRepository:
    def __init__(self, store: StateStore, storage: FileStorage) -> None:
        self.store = store
        self.storage = storage

    async def create(self, owner: str, purpose: str, filename: str, data: bytes) -> dict:
        # Shielded: a client that leaves mid-upload would cancel it between the bytes and their row, leaving bytes
        # no row points at (uncounted, never deleted); the upload completes instead.
        return await asyncio.shield(self._create(owner, purpose, filename, data))

    async def _create(self, owner: str, purpose: str, filename: str, data: bytes) -> dict:
        file_id = "file-" + secrets.token_hex(12)
        await self.storage.put(file_id, data)  # bytes first: a row never points at nothing
        row = {"id": file_id, "owner": owner, "purpose": purpose, "filename": filename[:512], "bytes": len(data),
               "created_at": int(time.time()), "location": file_id}
        try:
            async with self.store.transaction() as conn:
                await conn.execute(insert(files), row)
        except BaseException:
            await self.storage.delete(file_id)  # no row will point at these bytes
            raise
        return file_object(SimpleNamespace(**row))

    async def get(self, owner: str, file_id: str):
        """The row, or None when it does not exist or belongs to another key (both look the same: 404)."""
        async with self.store.transaction() as conn:
            return (await conn.execute(select(files).where(and_(files.c.id == file_id, files.c.owner == owner)))
                    ).first()

    async def content(self, row) -> bytes:
        return await self.storage.get(row.location)

    async def count(self, owner: str) -> int:
        async with self.store.transaction() as conn:
            return (await conn.execute(select(func.count()).select_from(files).where(files.c.owner == owner))
                    ).scalar_one()

    async def list(self, owner: str, purpose: str | None, limit: int, after: str | None, newest_first: bool):
        c = files.c
        query = select(files).where(c.owner == owner)
        if purpose:
            query = query.where(c.purpose == purpose)
        order = (c.created_at.desc(), c.id.desc()) if newest_first else (c.created_at.asc(), c.id.asc())
        async with self.store.transaction() as conn:
            if after:
                anchor = (await conn.execute(select(c.created_at, c.id).where(
                    and_(c.id == after, c.owner == owner)))).first()
                if anchor is not None:
                    if newest_first:
                        query = query.where((c.created_at < anchor.created_at)
                                            | and_(c.created_at == anchor.created_at, c.id < anchor.id))
                    else:
                        query = query.where((c.created_at > anchor.created_at)
                                            | and_(c.created_at == anchor.created_at, c.id > anchor.id))
            rows = (await conn.execute(query.order_by(*order).limit(limit + 1))).all()
        return [file_object(r) for r in rows[:limit]], len(rows) > limit

    async def delete(self, owner: str, file_id: str) -> bool:
        row = await self.get(owner, file_id)
        if row is None:
            return False
        await asyncio.shield(self._delete(row))  # the row and its bytes go together, whoever hangs up
        return True

    async def _delete(self, row) -> None:
        async with self.store.transaction() as conn:
            await conn.execute(delete(files).where(files.c.id == row.id))
        await self.storage.delete(row.location)
