"""Chat-template rendering and context checks shared by the text engines."""

from __future__ import annotations

from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest


def chat_messages(request: ChatCompletionRequest) -> list[dict]:
    # `developer` is OpenAI's newer name for `system`; open-model chat templates only know `system`.
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in request.messages]


def render_chat(tokenizer, request: ChatCompletionRequest) -> str:
    return tokenizer.apply_chat_template(chat_messages(request), tokenize=False, add_generation_prompt=True)


def context_overflow(max_model_len: int, prompt_tokens: int, completion_tokens: int) -> InvalidRequest:
    return InvalidRequest(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the messages, "
        f"{completion_tokens} in the completion). Please reduce the length of the messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )
