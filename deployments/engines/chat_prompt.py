"""Chat requests as the text engines take them: the model's chat template, images, and the context budget.

Shared by both text engines so they render the same prompt and refuse the same requests. The gateway has
already checked every image and rewritten it as a data URI of the checked bytes, so here images are only
decoded; an animated GIF contributes its first frame.
"""

from __future__ import annotations

import base64
import io
import json

from jinja2 import TemplateError

from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest, ChatMessage, ImagePart
from serve_app.protocol.completions import CompletionRequest
from serve_app.protocol.tools import tool_prompt
from serve_app.protocol.wire import MAX_CHARS_PER_TOKEN

TextRequest = ChatCompletionRequest | CompletionRequest


def template_role(message: ChatMessage) -> str:
    # `developer` is OpenAI's newer name for `system`; open-model chat templates only know `system`.
    return "system" if message.role == "developer" else message.role


def knows_tools(template_owner) -> bool:
    """Whether the model's chat template renders a `tools` list (Qwen, Llama 3.1+, Mistral, Hermes do)."""
    template = getattr(template_owner, "chat_template", None) or ""
    return "tools" in (template if isinstance(template, str) else json.dumps(template))


def _tool_turns(message: ChatMessage, native: bool) -> dict:
    """An assistant message's tool calls: structured for templates that know tools, else as the hermes text the
    fallback system prompt taught the model."""
    calls = [(c.function.name, _arguments(c.function.arguments)) for c in message.tool_calls or []]
    if native:
        return {"tool_calls": [{"type": "function", "function": {"name": name, "arguments": args}}
                               for name, args in calls]}
    blocks = "\n".join(f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"
                        for name, args in calls)
    return {"content": "\n".join(part for part in (message.text(), blocks) if part)}


def _arguments(raw: str):
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # the client's history as it sent it


def _with_tool_prompt(messages: list[dict], request: ChatCompletionRequest) -> list[dict]:
    """The tools described in the system message, for templates that know no tools."""
    prompt = tool_prompt(request.offered_tools())
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        return [{**messages[0], "content": messages[0]["content"] + "\n\n" + prompt}] + messages[1:]
    return [{"role": "system", "content": prompt}] + messages


def chat_messages(request: ChatCompletionRequest, native_tools: bool = False) -> list[dict]:
    """Plain-text messages for a tokenizer's chat template, tool calls and results included."""
    messages = []
    for m in request.messages:
        turn = {"role": template_role(m), "content": m.text()}
        if m.tool_calls:
            turn.update(_tool_turns(m, native_tools))
        if m.tool_call_id is not None:
            turn["tool_call_id"] = m.tool_call_id
        messages.append(turn)
    if request.offered_tools() and not native_tools:
        messages = _with_tool_prompt(messages, request)
    return messages


def processor_messages(request: ChatCompletionRequest) -> list[dict]:
    """Part-list messages for a processor's chat template (`{"type": "image"}` where each image was)."""
    messages = []
    for m in request.messages:
        if m.content is None or isinstance(m.content, str):
            parts = [{"type": "text", "text": m.text()}]
        else:
            parts = [{"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
                     for p in m.content]
        if m.tool_calls:  # vision templates know no tools: the calls as text
            parts.append({"type": "text", "text": _tool_turns(m, False)["content"]})
        messages.append({"role": template_role(m), "content": parts})
    if request.offered_tools():
        messages = [{"role": "system", "content": [{"type": "text", "text": tool_prompt(request.offered_tools())}]},
                    *messages]
    return messages


def apply_template(template_owner, messages: list[dict], tools: list[dict] | None = None,
                   thinking: bool = True) -> str:
    """Prompt text from a tokenizer's or processor's chat template; a template's refusal is a 400. `thinking`
    False: the template's own switch (`enable_thinking`, Qwen3's), or a 400 for a template that has none."""
    extra: dict = {"tools": tools} if tools else {}
    if not thinking:
        if "enable_thinking" not in str(template_owner.chat_template or ""):
            raise InvalidRequest("This model's chat template has no switch for its thinking: `reasoning_effort` "
                                 "none or minimal cannot be honoured.", param="reasoning_effort")
        extra["enable_thinking"] = False
    try:
        return template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
    except TemplateError as exc:  # e.g. a template that insists on alternating roles
        raise InvalidRequest(f"This model's chat template rejected the messages: {exc}", param="messages") from None


def render_chat(tokenizer, request: ChatCompletionRequest) -> str:
    native = bool(request.offered_tools()) and knows_tools(tokenizer)
    tools = [t.model_dump(exclude_none=True) for t in request.offered_tools()] if native else None
    return apply_template(tokenizer, chat_messages(request, native), tools, request.thinks())


def render_multimodal(processor, request: ChatCompletionRequest) -> str:
    return apply_template(processor, processor_messages(request), thinking=request.thinks())


def refuse_far_too_long(request: TextRequest, max_model_len: int) -> None:
    """Refuse, before the template runs, messages that cannot fit: every message costs at least one token of
    template framing (so thousands of empty messages count too), and text at most MAX_CHARS_PER_TOKEN
    characters per token."""
    if isinstance(request, CompletionRequest):
        chars, pieces = len(request.prompts()[0]), 0
    else:
        chars, pieces = sum(len(m.text()) for m in request.messages), len(request.messages)
    if chars // MAX_CHARS_PER_TOKEN + pieces > max_model_len:
        raise InvalidRequest(
            f"This model's maximum context length is {max_model_len} tokens; the prompt ({chars:,} characters"
            f"{f' in {pieces:,} messages' if pieces else ''}) needs more. Please shorten it.",
            param="prompt" if isinstance(request, CompletionRequest) else "messages",
            code="context_length_exceeded")


def encode_chat(tokenizer, request: TextRequest, max_model_len: int) -> list[int]:
    """Prompt token ids: the chat template for chat requests, the raw prompt for (legacy) completions."""
    refuse_far_too_long(request, max_model_len)
    if isinstance(request, CompletionRequest):
        ids = tokenizer(request.prompts()[0]).input_ids
        if not ids:  # a tokenizer that adds no BOS makes "" nothing to condition on (vLLM: the same 400)
            raise InvalidRequest("The prompt is empty.", param="prompt")
        return ids
    return tokenizer(render_chat(tokenizer, request), add_special_tokens=False).input_ids


def request_images(request: ChatCompletionRequest) -> list:
    from PIL import Image

    images = []
    for param, part in request.image_parts():
        url = part.image_url.url
        if not url.startswith("data:"):
            raise InvalidRequest("Images must reach the engine as data URIs.", param=param)
        try:
            with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as image:
                images.append(image.convert("RGB"))
        except Exception:  # noqa: BLE001 the gateway decoded it already; whatever still fails is the image's fault
            raise InvalidRequest("The image could not be decoded: it is corrupt or truncated.", param=param,
                                 code="invalid_image") from None
    return images


def encode_multimodal(processor, request: ChatCompletionRequest, max_model_len: int) -> tuple[list[int], dict]:
    """Prompt token ids (image placeholders expanded) and the vision inputs the model's forward takes."""
    refuse_far_too_long(request, max_model_len)
    prompt = render_multimodal(processor, request)
    images = request_images(request)
    try:
        inputs = processor(text=prompt, images=[images] if images else None, return_tensors="pt")
    except ValueError as exc:  # e.g. an image too small or too thin for the processor's resizing
        raise InvalidRequest(f"The model's image processor rejected an image: {exc}", param="messages",
                             code="invalid_image") from None
    vision = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    return inputs["input_ids"][0].tolist(), vision


def completion_cap(request: ChatCompletionRequest, max_model_len: int, prompt_tokens: int | None,
                   default_max_tokens: int) -> int:
    """Most tokens the completion may have; a 400 when the prompt plus the requested budget cannot fit.

    `prompt_tokens` is None when the engine expands image placeholders itself and the length is not known
    here (the engine then enforces the context on its own)."""
    budget = request.token_budget()
    if prompt_tokens is None:
        cap = budget or default_max_tokens
    else:
        room = max_model_len - prompt_tokens
        if room < 1 or (budget is not None and budget > room):
            raise context_overflow(max_model_len, prompt_tokens, budget or 1)
        cap = min(budget or default_max_tokens, room)
    if request.min_tokens > cap:  # both engines refuse alike (vLLM's SamplingParams would raise)
        raise InvalidRequest(f"min_tokens ({request.min_tokens}) must be at most the completion's maximum of {cap} "
                             "tokens (max_tokens, or the model's default and the context left).", param="min_tokens")
    return cap


def context_overflow(max_model_len: int, prompt_tokens: int, completion_tokens: int) -> InvalidRequest:
    return InvalidRequest(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the messages, "
        f"{completion_tokens} in the completion). Please reduce the length of the messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )
