"""Render a transcription in OpenAI's response formats: json, text, verbose_json, srt, vtt."""

from __future__ import annotations

import math
from dataclasses import asdict

from serve_app.contract import Transcription
from serve_app.protocol.audio import TranscriptionRequest


def duration_usage(seconds: float) -> dict:
    """OpenAI's usage for audio billed by length: whole seconds, rounded up."""
    return {"type": "duration", "seconds": math.ceil(seconds)}


def usage(t: Transcription) -> dict:
    return duration_usage(t.duration)


def as_json(t: Transcription) -> dict:
    return {"text": t.text, "usage": usage(t)}


def as_verbose_json(t: Transcription, request: TranscriptionRequest) -> dict:
    # A translation's language is its output's, always English (OpenAI's TranslationVerbose)
    language = "english" if request.task == "translate" else t.language
    body = {"task": request.task, "language": language, "duration": t.duration, "text": t.text}
    segments = []
    for s in t.segments:
        item = asdict(s)
        item.pop("words")
        item["seek"] = 0
        segments.append(item)
    if "segment" in request.timestamp_granularities:
        body["segments"] = segments
    if request.wants_words():
        body["words"] = [asdict(w) for s in t.segments for w in (s.words or [])]
    body["usage"] = usage(t)
    return body


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def as_srt(t: Transcription) -> str:
    blocks = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(t.segments, start=1)
    ]
    return "\n".join(blocks)


def as_vtt(t: Transcription) -> str:
    blocks = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n" for s in t.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)
