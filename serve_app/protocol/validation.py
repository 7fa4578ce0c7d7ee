"""Turn pydantic validation failures into the OpenAI 400 envelope (message + `param`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from serve_app.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def param_path(loc: tuple) -> str:
    """('messages', 0, 'content', 'list[...]', 0, 'text', 'text') -> 'messages[0].content[0].text'."""
    out = ""
    tagged = skip_tag = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            skip_tag, tagged = tagged, False
        elif skip_tag:  # the discriminator value pydantic puts after a tagged-union item's index
            skip_tag = False
        elif "tagged-union" in part:
            tagged = True
        elif not out or not _is_union_branch(part):  # the first part is a field the client sent (`include[]`)
            out += f".{part}" if out else str(part)
    return out


def _is_union_branch(part: str) -> bool:
    # pydantic names the union member it tried ('str', 'list[...]') inside locations.
    return any(ch in part for ch in "[]()") or part in {"str", "int", "float", "bool", "list", "dict"}


def _most_specific(errors: list[dict]) -> dict:
    # For `str | list[...]` fields pydantic reports every branch; the deepest location is the useful one.
    first = errors[0]["loc"][:1]
    return max((e for e in errors if e["loc"][:1] == first), key=lambda e: len(e["loc"]))


def _unrecognized(param: str | None) -> InvalidRequest:
    """OpenAI's 400 for an argument the route does not take."""
    return InvalidRequest(f"Unrecognized request argument supplied: {param}", param=param)


def refuse_unrecognized(names: Iterable[str]) -> None:
    """The 400 for the first (by name) of `names`, when there are any: fields a route would otherwise drop."""
    if unexpected := sorted(names):
        raise _unrecognized(unexpected[0])


def parse_model(model: type[M], data: object) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = _most_specific(exc.errors(include_url=False))
        param = param_path(tuple(err["loc"])) or None
        if err["type"] == "extra_forbidden":
            raise _unrecognized(param) from None
        if err["type"] == "missing":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param) from None
        message = err["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"Invalid value for '{param}': {message}." if param else message, param=param) from None
