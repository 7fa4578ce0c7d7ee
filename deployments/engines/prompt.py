"""Chat-template rendering and context checks shared by the text engines."""

from __future__ import annotations

from jinja2 import TemplateError

from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest


def chat_messages(request: ChatCompletionRequest) -> list[dict]:
    # `developer` is OpenAI's newer name for `system`; open-model chat templates only know `system`.
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in request.messages]


def apply_template(template_owner, messages: list[dict]) -> str:
    """Prompt text from a tokenizer's or processor's chat template; a template's refusal is a 400."""
    try:
        return template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as exc:  # e.g. a template that insists on alternating roles
        raise InvalidRequest(f"This model's chat template rejected the messages: {exc}", param="messages") from None


def render_chat(tokenizer, request: ChatCompletionRequest) -> str:
    return apply_template(tokenizer, chat_messages(request))


# No tokenizer packs more characters than this into one token in practice, so longer prompts cannot fit and
# are refused before spending time tokenizing them.
MAX_CHARS_PER_TOKEN = 32


def refuse_far_too_long(request: ChatCompletionRequest, max_model_len: int) -> None:
    chars = sum(len(m.text()) for m in request.messages)
    if chars > max_model_len * MAX_CHARS_PER_TOKEN:
        raise InvalidRequest(
            f"This model's maximum context length is {max_model_len} tokens; the messages ({chars:,} characters) "
            "are far longer. Please reduce the length of the messages.",
            param="messages", code="context_length_exceeded")


def encode_chat(tokenizer, request: ChatCompletionRequest, max_model_len: int) -> list[int]:
    refuse_far_too_long(request, max_model_len)
    return tokenizer(render_chat(tokenizer, request), add_special_tokens=False).input_ids


def context_overflow(max_model_len: int, prompt_tokens: int, completion_tokens: int) -> InvalidRequest:
    return InvalidRequest(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the messages, "
        f"{completion_tokens} in the completion). Please reduce the length of the messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )
