"""The Files API (/v1/files): batch input files uploaded as multipart, checked line by line, kept in the state
store; a key sees only its own files (another key's answer 404, as missing ones do)."""

from __future__ import annotations

import asyncio

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app.batches.input import parse_batch_file
from serve_app.config import StateConfig
from serve_app.errors import InvalidRequest, NotFound, RateLimited
from serve_app.gateway.body import BodyDeadline, read_capped, replay, too_large
from serve_app.gateway.context import context_of
from serve_app.gateway.routes.listing import list_page, page_params
from serve_app.state.files import UPLOAD_PURPOSES, FileRepository, file_object

_FORM_OVERHEAD = 64 * 1024


class FilesRoute:
    def __init__(self, files: FileRepository, config: StateConfig, deadline: BodyDeadline,
                 max_json_elements: int) -> None:
        self.files = files
        self.config = config
        self.deadline = deadline
        self.max_json_elements = max_json_elements  # per line, as for a JSON request body

    async def upload(self, request: Request) -> JSONResponse:
        caller = context_of(request).authenticated()
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidRequest("Send the file as multipart/form-data with `file` and `purpose` fields.",
                                 param="file")
        if await self.files.count(caller.name) >= self.config.max_files_per_key:  # before reading 200 MB
            raise RateLimited(f"Key `{caller.name}` already keeps {self.config.max_files_per_key} files; delete "
                              "some before uploading more.", code="files_limit_reached")
        raw = await read_capped(request, self.config.max_file_bytes, "the file", slack=_FORM_OVERHEAD,
                                deadline=self.deadline)
        data, filename, purpose = await self._parse_form(Request(request.scope, replay(raw)))
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(f"`purpose` must be one of {list(UPLOAD_PURPOSES)}.", param="purpose")
        # in a thread: checking 50,000 lines must not stall this replica's other requests
        await asyncio.to_thread(parse_batch_file, data, self.config.max_batch_lines, self.max_json_elements)
        return JSONResponse(await self.files.create(caller.name, purpose, filename, data))

    async def _parse_form(self, request: Request) -> tuple[bytes, str, str]:
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as exc:  # noqa: BLE001 python-multipart / starlette reject malformed bodies with various types
            raise InvalidRequest(f"Malformed multipart body: {exc}", param="file") from None
        try:
            upload, purpose = form.get("file"), form.get("purpose")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("Missing required parameter: 'file'.", param="file")
            if not isinstance(purpose, str):
                raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
            data = await upload.read()
            filename = upload.filename or "upload.jsonl"
        finally:
            await form.close()
        if len(data) > self.config.max_file_bytes:
            raise too_large(self.config.max_file_bytes, "the file")
        if not data:
            raise InvalidRequest("The uploaded file is empty.", param="file")
        return data, filename, purpose

    async def _owned(self, request: Request):
        file_id = request.path_params["file_id"]
        row = await self.files.get(context_of(request).authenticated().name, file_id)
        if row is None:
            raise NotFound("File", file_id, param="file_id")
        return row

    async def retrieve(self, request: Request) -> JSONResponse:
        return JSONResponse(file_object(await self._owned(request)))

    async def content(self, request: Request) -> Response:
        row = await self._owned(request)
        return Response(await self.files.content(row), media_type="application/jsonl",
                        headers={"Content-Disposition": f'attachment; filename="{row.id}.jsonl"'})

    async def delete(self, request: Request) -> JSONResponse:
        row = await self._owned(request)
        await self.files.delete(row.owner, row.id)
        return JSONResponse({"id": row.id, "object": "file", "deleted": True})

    async def list(self, request: Request) -> JSONResponse:
        caller = context_of(request).authenticated()
        limit, after = page_params(request, default_limit=10_000, most=10_000)
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("`order` must be asc or desc.", param="order")
        data, more = await self.files.list(caller.name, request.query_params.get("purpose"), limit, after,
                                           order == "desc")
        return list_page(data, more)
