"""JSON Schemas clients send (a `json_schema` response format, tool parameters) checked against the JSON
Schema meta-schema before any model work, each failure a 400 naming where it is."""

from __future__ import annotations

from jsonschema import SchemaError, validators

from serve_app.errors import InvalidRequest
from serve_app.protocol.chat import ChatCompletionRequest


def check_schemas(request: ChatCompletionRequest) -> None:
    fmt = request.response_format
    if fmt is not None and fmt.json_schema is not None and fmt.json_schema.schema_ is not None:
        _check(fmt.json_schema.schema_, "response_format.json_schema.schema")
    for i, tool in enumerate(request.tools or []):
        parameters = tool.function.parameters
        if parameters is None:
            continue
        param = f"tools[{i}].function.parameters"
        _check(parameters, param)
        if parameters.get("type", "object") != "object":
            raise InvalidRequest("Function parameters must be a JSON Schema of `type: object`.", param=param)


def _check(schema: dict, param: str) -> None:
    dialect = schema.get("$schema")
    if dialect is not None and not isinstance(dialect, str):  # validator_for hashes it: a list is a TypeError
        raise InvalidRequest("Invalid JSON Schema: `$schema` must be a URI string.", param=param)
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"Invalid JSON Schema: {exc.message}", param=param) from None
    except RecursionError:
        raise InvalidRequest("Invalid JSON Schema: it is nested too deeply.", param=param) from None
    except ValueError as exc:  # a `$schema` URI that cannot be parsed (e.g. "http://[")
        raise InvalidRequest(f"Invalid JSON Schema: {exc}", param=param) from None
