"""The one file of a multipart/form-data upload and its text fields, as the audio and files routes take them:
read within the route's byte cap and time limits (gateway/body.py), then parsed and checked."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request

from serve_app.errors import InvalidRequest
from serve_app.gateway.body import BodyDeadline, read_capped, replay, too_large

_FORM_OVERHEAD = 64 * 1024  # boundaries and the small text fields around the file


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    fields: list[tuple[str, str]]  # the text fields, in order (a repeated name is kept each time)


def require_multipart(request: Request, fields: str) -> None:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest(f"Send the file as multipart/form-data with {fields}.", param="file")


async def read_upload(request: Request, max_bytes: int, what: str, max_fields: int,
                      deadline: BodyDeadline | None) -> Upload:
    """The `file` field and the text fields; a missing, empty or oversized file is a 400/413, a second file 400.
    The body is read whole first, capped (413 before parsing), then parsed from memory."""
    raw = await read_capped(request, max_bytes, what, slack=_FORM_OVERHEAD, deadline=deadline)
    try:
        form = await Request(request.scope, replay(raw)).form(max_files=1, max_fields=max_fields)
    except Exception as exc:  # noqa: BLE001 python-multipart / starlette reject malformed bodies with various types
        raise InvalidRequest(f"Malformed multipart body: {exc}", param="file") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        data = await upload.read()
        # max_files=1: the one file is `file` (a second is refused above), so every other field is text
        fields = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise too_large(max_bytes, what)
    if not data:
        raise InvalidRequest("The uploaded file is empty.", param="file")
    return Upload(data, upload.filename, fields)
