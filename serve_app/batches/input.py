"""Batch input files (OpenAI's JSONL: one `{custom_id, method, url, body}` request per line), checked before a
file or a batch is accepted so a mistake is a 400 naming its line, not a failed batch hours later."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from serve_app.errors import InvalidRequest
from serve_app.gateway.json_guard import count_elements, first_unencodable

# JSON routes a batch may target (transcriptions take multipart uploads, which JSONL cannot carry).
# The routes a batch may target, and what its lines' model must be able to do.
BATCH_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "chat", "/v1/embeddings": "embedding"}
_MAX_CUSTOM_ID = 512


@dataclass(frozen=True)
class BatchLine:
    index: int  # 0-based among the requests (blank lines are not counted)
    number: int  # 1-based line of the file, for error messages
    custom_id: str
    url: str
    body: dict


def parse_batch_file(data: bytes, max_lines: int, max_elements: int, param: str = "file") -> list[BatchLine]:
    """Every line a well-formed request to a batch endpoint, custom_ids unique; InvalidRequest names the line.
    Each line is bounded as a JSON request body is (`max_elements`, nesting, valid Unicode)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The batch file must be UTF-8 JSONL.", param=param) from None
    lines: list[BatchLine] = []
    seen: dict[str, int] = {}
    # "\n" only: str.splitlines() would also cut at U+2028 and friends, which JSON strings may hold raw
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        if len(lines) == max_lines:
            raise InvalidRequest(f"The batch file has more than {max_lines:,} requests.", param=param)

        def bad(why: str, number: int = number) -> InvalidRequest:
            return InvalidRequest(f"Line {number} of the batch file: {why}", param=param, code="invalid_batch_line")

        elements = count_elements(raw.encode())
        if elements > max_elements:
            raise bad(f"too many JSON elements ({elements:,}; the maximum is {max_elements:,}).")
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise bad(f"not valid JSON ({exc.msg} at column {exc.colno}).") from None
        except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
            raise bad(f"not valid JSON ({exc}).") from None
        unencodable = first_unencodable(item)
        if unencodable is not None:
            raise bad(f"the string at `{unencodable}` is not valid Unicode (a lone surrogate).")
        if not isinstance(item, dict):
            raise bad("must be a JSON object with custom_id, method, url and body.")
        extra = sorted(set(item) - {"custom_id", "method", "url", "body"})
        if extra:
            raise bad(f"unknown fields {extra}.")
        custom_id, method, url, body = (item.get(k) for k in ("custom_id", "method", "url", "body"))
        if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= _MAX_CUSTOM_ID:
            raise bad(f"`custom_id` must be a string of 1 to {_MAX_CUSTOM_ID} characters.")
        if custom_id in seen:
            raise bad(f"duplicate custom_id {custom_id!r} (first on line {seen[custom_id]}).")
        seen[custom_id] = number
        if method != "POST":
            raise bad("`method` must be \"POST\".")
        if url not in BATCH_ENDPOINTS:
            raise bad(f"`url` must be one of {list(BATCH_ENDPOINTS)}, not {url!r}.")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise bad("`body` must be a request object with a `model`.")
        if body.get("stream"):
            raise bad("streaming is not available in batches; remove `stream`.")
        lines.append(BatchLine(len(lines), number, custom_id, url, body))
    if not lines:
        raise InvalidRequest("The batch file holds no requests.", param=param)
    return lines


def check_batch_lines(lines: list[BatchLine], endpoint: str, model_known: Callable[[str], bool]) -> None:
    """At batch creation: every line targets the batch's endpoint and a model this key can use."""
    for line in lines:
        where = f"Line {line.number} of the input file (custom_id {line.custom_id!r})"
        if line.url != endpoint:
            raise InvalidRequest(f"{where}: url {line.url!r} differs from the batch's endpoint {endpoint!r}.",
                                 param="input_file_id", code="invalid_batch_line")
        if not model_known(line.body["model"]):
            raise InvalidRequest(f"{where}: the model `{line.body['model']}` does not exist or you do not have "
                                 "access to it.", param="input_file_id", code="model_not_found")
