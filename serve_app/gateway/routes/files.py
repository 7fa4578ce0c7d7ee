"""The Files API (/v1/files): batch input files uploaded as multipart, checked line by line, kept in the state
store; a key sees only its own files (another key's answer 404, as missing ones do)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app.batches.input import parse_batch_file
from serve_app.config import StateConfig
from serve_app.errors import InvalidRequest, NotFound, RateLimited
from serve_app.gateway.body import BodyDeadline
from serve_app.gateway.context import context_of
from serve_app.gateway.multipart import read_upload, require_multipart
from serve_app.gateway.routes.listing import list_page, page_params
from serve_app.protocol.validation import refuse_unrecognized
from serve_app.state.files import UPLOAD_PURPOSES, FileRepository, file_object


class FilesRoute:
    def __init__(self, files: FileRepository, config: StateConfig, deadline: BodyDeadline,
                 max_json_elements: int) -> None:
        self.files = files
        self.config = config
        self.deadline = deadline
        self.max_json_elements = max_json_elements  # per line, as for a JSON request body

    async def upload(self, request: Request) -> JSONResponse:
        caller = context_of(request).authenticated()
        require_multipart(request, "`file` and `purpose` fields")
        if await self.files.count(caller.name) >= self.config.max_files_per_key:  # before reading 200 MB
            raise RateLimited(f"Key `{caller.name}` already keeps {self.config.max_files_per_key} files; delete "
                              "some before uploading more.", code="files_limit_reached")
        upload = await read_upload(request, self.config.max_file_bytes, "the file", 8, self.deadline)
        fields = dict(upload.fields)
        refuse_unrecognized(fields.keys() - {"purpose"})  # e.g. expires_after[...]: no expiry is kept here
        purpose = fields.get("purpose")
        if purpose is None:
            raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(f"`purpose` must be one of {list(UPLOAD_PURPOSES)}.", param="purpose")
        # in a thread: checking 50,000 lines must not stall this replica's other requests
        await asyncio.to_thread(parse_batch_file, upload.data, self.config.max_batch_lines, self.max_json_elements)
        return JSONResponse(await self.files.create(caller.name, purpose, upload.filename or "upload.jsonl",
                                                    upload.data))

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
