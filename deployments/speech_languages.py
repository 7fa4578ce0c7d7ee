"""Which `language` (and translation) a Whisper model can be asked for: checked by the coordinator before any
audio is decoded, and by each replica (its own guard when called directly). No engine is imported here: the
coordinator runs on the cluster's head, which has faster-whisper but no model engines."""

from __future__ import annotations

from faster_whisper.tokenizer import _LANGUAGE_CODES

from serve_app.errors import InvalidRequest
from serve_app.protocol.audio import TranscriptionRequest


def check_language(request: TranscriptionRequest, multilingual: bool) -> None:
    if request.task == "translate" and not multilingual:
        raise InvalidRequest(f"Model `{request.model}` is an English-only speech model and does not support "
                             "audio translations.", param="model", code="model_not_supported")
    if request.language is None:
        return
    if request.language not in _LANGUAGE_CODES:
        raise InvalidRequest(f"Unknown language code `{request.language}` (use ISO-639-1, e.g. `en`).",
                             param="language")
    if request.language != "en" and not multilingual:
        raise InvalidRequest(
            f"Model `{request.model}` only transcribes English; language `{request.language}` is not supported.",
            param="language",
        )
