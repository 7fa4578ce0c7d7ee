"""Parse an untrusted JSON body within bounds, so its size in memory stays close to its size on the wire.

`json.loads` turns 5 MB of `[],[],...` into ~100 MB of Python objects before any check can run, so the
number of containers and values is counted on the raw bytes first (a C-speed count; strings are stripped
only when the quick count is high). After parsing, every string is checked to be encodable: a lone surrogate
(`"\\ud800"`) is valid JSON but breaks every encoder downstream (tokenizers, JSON responses).
"""

from __future__ import annotations

import json
import re
from typing import Any

from serve_app.errors import InvalidRequest

# A string runs to its closing quote or, unterminated, to the end of the body: without the `\Z` branch every
# quote of an unterminated run of `\"` starts a scan to the end (quadratic: 84 KB held the loop for 12 s).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)


def count_elements(raw: bytes) -> int:
    """Containers plus separated values outside strings (an upper bound of the values json.loads creates)."""
    def structural(data: bytes) -> int:
        return data.count(b"[") + data.count(b"{") + data.count(b",") + data.count(b":")

    quick = structural(raw)  # brackets inside strings count too: an over-estimate
    return quick if quick < 1024 else structural(_STRING.sub(b'""', raw))


def parse_json_object(raw: bytes, max_elements: int) -> dict:
    elements = count_elements(raw)
    if elements > max_elements:
        raise InvalidRequest(f"The JSON body has too many elements ({elements:,}; the maximum is {max_elements:,}).")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge integers, absurd nesting
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    bad = first_unencodable(body)
    if bad is not None:
        raise InvalidRequest(f"Invalid value for '{bad}': the string is not valid Unicode (a lone surrogate).",
                             param=bad)
    return body


def first_unencodable(value: Any) -> str | None:
    """Path (`messages[0].content`) of the first string, key included, that cannot be encoded as UTF-8."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # iterative: nesting depth is json's to bound, not Python's recursion limit
        path, item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return path or None
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not _encodable(key):
                    return path or "(key)"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
