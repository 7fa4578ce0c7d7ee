"""The endpoint's OpenAPI 3.1 document (GET /openapi.json): request bodies generated from the pydantic wire
models the gateway validates with, responses and errors as the gateway renders them. Client generators use
it, and the test suite sends thousands of requests generated from it."""

from __future__ import annotations

from typing import Any

from serve_app.config import KINDS
from serve_app.protocol.audio import TranscriptionRequest
from serve_app.protocol.batches import BatchCreateRequest
from serve_app.protocol.chat import ChatCompletionRequest
from serve_app.protocol.completions import CompletionRequest
from serve_app.protocol.embeddings import EmbeddingRequest
from serve_app.protocol.responses import INPUT_TOKENS_FIELDS, ResponsesRequest

REF = "#/components/schemas/{model}"
ERRORS = {"400": "Invalid request", "401": "Missing or invalid API secret",
          "404": "Unknown model, route, file, batch or response", "409": "Not possible in the object's state",
          "408": "The request body arrived too slowly", "413": "File or body too large",
          "415": "Unsupported file type", "429": "A rate limit is spent", "500": "Server error",
          "503": "Model overloaded, starting, or unavailable; retry"}
_NULLABLE_STRING = {"type": ["string", "null"]}

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": _NULLABLE_STRING,
                   "code": _NULLABLE_STRING}}}}
USAGE = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
         "properties": {k: {"type": "integer", "minimum": 0} for k in ("prompt_tokens", "completion_tokens",
                                                                        "total_tokens")}}
CHAT_COMPLETION = {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
                   "properties": {
                       "id": {"type": "string"}, "object": {"const": "chat.completion"},
                       "created": {"type": "integer"}, "model": {"type": "string"}, "usage": USAGE,
                       "choices": {"type": "array", "items": {
                           "type": "object", "required": ["index", "message", "finish_reason"],
                           "properties": {"index": {"type": "integer"},
                                          "message": {"type": "object", "required": ["role", "content"],
                                                      "properties": {"role": {"const": "assistant"},
                                                                     "content": _NULLABLE_STRING}},
                                          "logprobs": {"type": ["object", "null"]},
                                          "finish_reason": {"enum": ["stop", "length", None]}}}}}}
TEXT_COMPLETION = {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
                   "properties": {
                       "id": {"type": "string"}, "object": {"const": "text_completion"},
                       "created": {"type": "integer"}, "model": {"type": "string"}, "usage": USAGE,
                       "choices": {"type": "array", "items": {
                           "type": "object", "required": ["index", "text", "finish_reason"],
                           "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                                          "logprobs": {"type": ["object", "null"]},
                                          "finish_reason": {"enum": ["stop", "length", None]}}}}}}
MODEL = {"type": "object", "required": ["id", "object", "created", "owned_by"],
         "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                        "owned_by": {"type": "string"}, "kind": {"enum": list(KINDS)},
                        "capabilities": {"type": "object"}, "limits": {"type": "object"},
                        "status": {"enum": ["ready", "cold"]}}}
MODEL_LIST = {"type": "object", "required": ["object", "data"],
              "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"$ref": REF.format(
                  model="Model")}}}}
# One server-sent event: `data:` holds a JSON chunk (or `[DONE]`; an error event holds the error envelope).
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"},
                                                                      "event": {"type": "string"}}}
RESPONSE = {"type": "object", "required": ["id", "object", "created_at", "status", "model", "output"],
            "properties": {"id": {"type": "string"}, "object": {"const": "response"},
                           "created_at": {"type": "integer"}, "model": {"type": "string"},
                           "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
                           "output": {"type": "array", "items": {"type": "object", "required": ["id", "type"]}},
                           "usage": {"type": ["object", "null"]}}}
TRANSCRIPTION = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
INPUT_TOKENS = {"type": "object", "required": ["object", "input_tokens"],
                "properties": {"object": {"const": "response.input_tokens"},
                               "input_tokens": {"type": "integer", "minimum": 0}}}


def _errors(*codes: str) -> dict:
    return {code: {"description": ERRORS[code], "content": {"application/json": {
        "schema": {"$ref": REF.format(model="Error")}}}} for code in codes}


def _json(schema_ref: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=schema_ref)}}}}


def _request_schemas() -> dict[str, Any]:
    """Components for the wire models: each model's schema, its nested definitions hoisted beside it."""
    schemas: dict[str, Any] = {}
    for model in (ChatCompletionRequest, CompletionRequest, TranscriptionRequest, BatchCreateRequest,
                  ResponsesRequest, EmbeddingRequest):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    form = schemas["TranscriptionRequest"]
    form["properties"].pop("filename", None)  # taken from the upload, not a form field
    form["properties"].pop("task", None)  # set by the route
    granularities = form["properties"].pop("timestamp_granularities")
    form["properties"]["timestamp_granularities[]"] = granularities
    form["properties"]["file"] = {"type": "string", "format": "binary",
                                  "description": "mp3, mp4, mpeg, mpga, m4a, wav, webm, ogg or flac; 25 MB at most"}
    form["required"] = ["file", "model"]
    # A translation's form: the source language is detected, and segments are the only granularity.
    responses = schemas["ResponsesRequest"]
    schemas["ResponsesInputTokensRequest"] = {**responses, "title": "ResponsesInputTokensRequest", "properties": {
        k: v for k, v in responses["properties"].items() if k in INPUT_TOKENS_FIELDS}}
    schemas["TranslationRequest"] = {**form, "title": "TranslationRequest", "properties": {
        k: v for k, v in form["properties"].items() if k not in ("language", "timestamp_granularities[]")}}
    return schemas


def openapi_document(version: str) -> dict[str, Any]:
    authenticated = [{"bearer": []}, {"apiKey": []}]
    api_errors = ("400", "401", "404", "408", "413", "429", "500", "503")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Self-hosted OpenAI-compatible endpoint", "version": version,
                 "description": "Chat (text and images), responses, embeddings, speech recognition and translation, "
                                "files and batches behind one URL and "
                                "API secret."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
            "schemas": {**_request_schemas(), "Error": ERROR, "ChatCompletion": CHAT_COMPLETION,
                        "TextCompletion": TEXT_COMPLETION, "Model": MODEL,
                        "ModelList": MODEL_LIST, "Transcription": TRANSCRIPTION, "Response": RESPONSE,
                        "InputTokens": INPUT_TOKENS},
        },
        "security": authenticated,
        "paths": {
            "/health": {"get": {"operationId": "health", "security": [], "responses": {"200": {
                "description": "Alive", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "security": [], "responses": {"200": {
                "description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/v1/models": {"get": {"operationId": "listModels", "responses": {
                "200": _json("ModelList", "Models this key may use"), **_errors("401", "429", "500", "503")}}},
            "/v1/models/{model_id}": {"get": {
                "operationId": "retrieveModel",
                "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json("Model", "One model"), **_errors("401", "404", "429", "500", "503")}}},
            "/v1/chat/completions": {"post": {
                "operationId": "createChatCompletion",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": REF.format(model="ChatCompletionRequest")}}}},
                "responses": {"200": {"description": "A completion, or with `stream: true` server-sent events",
                                      "content": {"application/json": {"schema": {"$ref": REF.format(
                                          model="ChatCompletion")}},
                                                  "text/event-stream": {"schema": SSE_EVENT}}},
                              **_errors(*api_errors, "415")}}},
            "/v1/responses": {"post": {
                "operationId": "createResponse",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": REF.format(model="ResponsesRequest")}}}},
                "responses": {"200": {"description": "A response, or with `stream: true` OpenAI's named "
                                                     "server-sent events (no `[DONE]`)",
                                      "content": {"application/json": {"schema": {"$ref": REF.format(
                                          model="Response")}},
                                                  "text/event-stream": {"schema": SSE_EVENT}}},
                              **_errors(*api_errors, "415")}}},
            "/v1/responses/input_tokens": {"post": {
                "operationId": "countResponseInputTokens",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": REF.format(model="ResponsesInputTokensRequest")}}}},
                "responses": {"200": _json("InputTokens", "The input tokens the request would use"),
                              **_errors(*api_errors, "415")}}},
            "/v1/responses/{response_id}": {
                "get": {"operationId": "retrieveResponse", "parameters": [_path("response_id")],
                        "responses": {"200": _json("Response", "A stored response"), **_errors(*api_errors)}},
                "delete": {"operationId": "deleteResponse", "parameters": [_path("response_id")],
                           "responses": {"200": _object("Deleted"), **_errors(*api_errors)}}},
            "/v1/responses/{response_id}/input_items": {"get": {
                "operationId": "listResponseInputItems",
                "parameters": [_path("response_id"), _query("limit", {"type": "integer"}),
                               _query("after", {"type": "string"}),
                               _query("order", {"type": "string", "enum": ["asc", "desc"]})],
                "responses": {"200": _object("The items the response was answered from"),
                              **_errors(*api_errors)}}},
            "/v1/completions": {"post": {
                "operationId": "createCompletion",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": REF.format(model="CompletionRequest")}}}},
                "responses": {"200": {"description": "Legacy text completion, or with `stream: true` server-sent "
                                                     "events",
                                      "content": {"application/json": {"schema": {"$ref": REF.format(
                                          model="TextCompletion")}},
                                                  "text/event-stream": {"schema": SSE_EVENT}}},
                              **_errors(*api_errors, "415")}}},
            "/v1/audio/transcriptions": {"post": {
                "operationId": "createTranscription",
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"$ref": REF.format(model="TranscriptionRequest")}}}},
                "responses": {"200": {"description": "The transcript in the requested format",
                                      "content": {"application/json": {"schema": {"$ref": REF.format(
                                          model="Transcription")}},
                                                  "text/plain": {"schema": {"type": "string"}},
                                                  "text/vtt": {"schema": {"type": "string"}},
                                                  "text/event-stream": {"schema": SSE_EVENT}}},
                              **_errors(*api_errors, "415")}}},
            "/v1/audio/translations": {"post": {
                "operationId": "createTranslation",
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"$ref": REF.format(model="TranslationRequest")}}}},
                "responses": {"200": {"description": "The English translation in the requested format",
                                      "content": {"application/json": {"schema": {"$ref": REF.format(
                                          model="Transcription")}},
                                                  "text/plain": {"schema": {"type": "string"}},
                                                  "text/vtt": {"schema": {"type": "string"}},
                                                  "text/event-stream": {"schema": SSE_EVENT}}},
                              **_errors(*api_errors, "415")}}},
            "/v1/embeddings": {"post": {
                "operationId": "createEmbedding",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": REF.format(model="EmbeddingRequest")}}}},
                "responses": {"200": _object("One embedding per input, in order"),
                              **_errors(*api_errors, "415")}}},
            "/v1/usage": {"get": {
                "operationId": "usage",
                "parameters": [_query("start_time", {"type": "integer"}, required=True),
                               _query("end_time", {"type": "integer"}),
                               _query("bucket_width", {"type": "string", "enum": ["1m", "1h", "1d"]}),
                               _query("group_by", {"type": "array", "items": {
                                   "type": "string", "enum": ["model", "key", "batch"]}}),
                               _query("limit", {"type": "integer"}), _query("page", {"type": "string"})],
                "responses": {"200": _object("Buckets of usage from the ledger (admin keys: every key)"),
                              **_errors("400", "401", "429", "500", "503")}}},
            "/v1/files": {
                "post": {"operationId": "createFile",
                         "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                             "type": "object", "required": ["file", "purpose"],
                             "properties": {"file": {"type": "string", "format": "binary"},
                                            "purpose": {"type": "string", "enum": ["batch"]}}}}}},
                         "responses": {"200": _object("The file"), **_errors(*api_errors, "415")}},
                "get": {"operationId": "listFiles",
                        "parameters": [_query("purpose", {"type": "string"}), _query("limit", {"type": "integer"}),
                                       _query("after", {"type": "string"}),
                                       _query("order", {"type": "string", "enum": ["asc", "desc"]})],
                        "responses": {"200": _object("This key's files"), **_errors(*api_errors)}}},
            "/v1/files/{file_id}": {
                "get": {"operationId": "retrieveFile", "parameters": [_path("file_id")],
                        "responses": {"200": _object("The file"), **_errors(*api_errors)}},
                "delete": {"operationId": "deleteFile", "parameters": [_path("file_id")],
                           "responses": {"200": _object("Deleted"), **_errors(*api_errors)}}},
            "/v1/files/{file_id}/content": {"get": {
                "operationId": "downloadFile", "parameters": [_path("file_id")],
                "responses": {"200": {"description": "The file's bytes (JSONL)", "content": {
                    "application/jsonl": {"schema": {"type": "string"}}}}, **_errors(*api_errors)}}},
            "/v1/batches": {
                "post": {"operationId": "createBatch",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "$ref": REF.format(model="BatchCreateRequest")}}}},
                         "responses": {"200": _object("The batch"), **_errors(*api_errors, "415")}},
                "get": {"operationId": "listBatches",
                        "parameters": [_query("limit", {"type": "integer"}), _query("after", {"type": "string"})],
                        "responses": {"200": _object("This key's batches"), **_errors(*api_errors)}}},
            "/v1/batches/{batch_id}": {"get": {
                "operationId": "retrieveBatch", "parameters": [_path("batch_id")],
                "responses": {"200": _object("The batch"), **_errors(*api_errors)}}},
            "/v1/batches/{batch_id}/cancel": {"post": {
                "operationId": "cancelBatch", "parameters": [_path("batch_id")],
                "responses": {"200": _object("The batch, cancelling"), **_errors(*api_errors, "409")}}},
        },
    }


def _object(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def _query(name: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
