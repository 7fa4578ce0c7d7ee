"""POST /v1/audio/transcriptions and /v1/audio/translations (into English): capped multipart upload, checks on
the bytes, then the speech deployment. A translation is a transcription with Whisper's `translate` task."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from serve_app.contract import ChunkTranscript
from serve_app.errors import InvalidRequest
from serve_app.gateway.body import BodyDeadline
from serve_app.gateway.context import Usage, context_of
from serve_app.gateway.multipart import read_upload, require_multipart
from serve_app.gateway.registry import ModelRegistry
from serve_app.gateway.streaming import sse_response
from serve_app.protocol import transcript_formats as fmt
from serve_app.protocol.audio import TranscriptionRequest, sniff_audio
from serve_app.protocol.validation import parse_model, refuse_unrecognized

# OpenAI's translations take no `language` (the source is detected) and no timestamp granularities; `task` is
# ours to set, never the form's.
_NOT_FORM_FIELDS = {"transcribe": {"task"}, "translate": {"task", "language", "timestamp_granularities"}}
_CAPABILITY = {"transcribe": "transcription", "translate": "translation"}


async def _transcript_events(first: ChunkTranscript | None, rest: AsyncIterator[ChunkTranscript], used: Usage):
    """OpenAI's streamed transcription events: text deltas as chunks finish, then the whole text."""
    texts: list[str] = []
    seconds = 0.0
    piece = first
    while piece is not None:
        for segment in piece.segments:
            text = segment.text.strip()
            if text:
                yield {"type": "transcript.text.delta", "delta": (" " if texts else "") + text}
                texts.append(text)
        seconds += piece.seconds
        used.audio_seconds = seconds
        piece = await anext(rest, None)
    yield {"type": "transcript.text.done", "text": " ".join(texts),
           "usage": fmt.duration_usage(seconds)}


class TranscriptionRoute:
    def __init__(self, registry: ModelRegistry, max_audio_bytes: int, deadline: BodyDeadline,
                 task: str = "transcribe") -> None:
        self.registry = registry
        self.max_audio_bytes = max_audio_bytes
        self.deadline = deadline
        self.task = task

    async def handle(self, request: Request) -> Response:
        require_multipart(request, "a `file` field")
        context = context_of(request)
        upload = await read_upload(request, self.max_audio_bytes, "the audio file", 32, self.deadline)
        audio, fields = upload.data, _form_fields(upload.fields, upload.filename)
        refuse_unrecognized(_NOT_FORM_FIELDS[self.task] & fields.keys())
        req = parse_model(TranscriptionRequest, {**fields, "task": self.task})
        model = self.registry.for_caller(context, req.model, _CAPABILITY[self.task])
        sniff_audio(audio)
        await self.registry.warm(model)
        if req.stream:
            if req.response_format not in ("json", "text"):
                raise InvalidRequest("stream=true works with response_format json or text.", param="stream")
            pieces = model.backend.stream(audio, req)
            first = await anext(pieces, None)  # errors found up front (bad audio, too long) keep their status
            return sse_response(_transcript_events(first, pieces, context.usage), done_marker=False)
        result = await model.backend.transcribe(audio, req)
        context.usage.audio_seconds = result.duration
        if req.response_format == "text":
            return PlainTextResponse(result.text + "\n")
        if req.response_format == "srt":
            return PlainTextResponse(fmt.as_srt(result))
        if req.response_format == "vtt":
            return PlainTextResponse(fmt.as_vtt(result), media_type="text/vtt")
        if req.response_format == "verbose_json":
            return JSONResponse(fmt.as_verbose_json(result, req))
        return JSONResponse(fmt.as_json(result))


def _form_fields(fields: list[tuple[str, str]], filename: str | None) -> dict:
    """The text fields as the request model takes them: `timestamp_granularities[]` repeated into one list."""
    found: dict = {"filename": filename}
    for key, value in fields:
        if key in ("timestamp_granularities[]", "timestamp_granularities"):
            found.setdefault("timestamp_granularities", []).append(value)
        else:
            found[key] = value
    return found
