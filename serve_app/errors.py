"""The one error channel: typed API errors with their HTTP status and OpenAI envelope.

Part of the kernel replicas import: raised anywhere (gateway, engines, coordinator), pickled intact across
Ray, rendered to HTTP only by the gateway (serve_app.gateway.errors)."""

from __future__ import annotations

import math
from typing import Any


class APIError(Exception):
    """An error the client should see, with its HTTP status and OpenAI `type`/`code`."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}

    def __reduce__(self):
        # Keep the error intact when it crosses a Ray process boundary.
        return (_rebuild, (type(self), self.message, self.param, self.code, self.headers))


def _rebuild(cls, message, param, code, headers):
    # Past the subclass's own __init__ (ModelNotFound takes a model id, ServerError a message only): the
    # fields are restored as they were, whatever arguments built them.
    error = cls.__new__(cls)
    APIError.__init__(error, message, param=param, code=code, headers=headers)
    return error


class InvalidRequest(APIError):
    status_code = 400


class AuthenticationFailed(APIError):
    status_code = 401
    default_code = "invalid_api_key"

    def __init__(self, message: str = "Invalid API secret. Send it as `x-api-key: <SECRET>` or "
                 "`Authorization: Bearer <SECRET>`.", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class ModelNotFound(APIError):
    status_code = 404
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class NotFound(APIError):
    """A file, batch or other object that does not exist, or belongs to another key (the same answer)."""

    status_code = 404

    def __init__(self, kind: str, object_id: str, param: str | None = None) -> None:
        super().__init__(f"No such {kind} object: {object_id}", param=param)


class RouteNotFound(APIError):
    status_code = 404

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Invalid URL ({method} {path})")


class RequestTimeout(APIError):
    status_code = 408
    default_code = "request_timeout"


class MethodNotAllowed(APIError):
    status_code = 405

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Method {method} is not allowed for {path}")


class Conflict(APIError):
    status_code = 409


class FileTooLarge(APIError):
    status_code = 413
    default_code = "file_too_large"


class UnsupportedFileType(APIError):
    status_code = 415
    default_code = "unsupported_file_type"


class RateLimited(APIError):
    status_code = 429
    default_code = "rate_limit_exceeded"


class TokensRateLimited(RateLimited):
    """A per-minute token limit: OpenAI's rate-limit errors name what ran out in `type` (`tokens`)."""

    error_type = "tokens"


class RequestsRateLimited(RateLimited):
    """Any other per-minute or concurrency limit: `type` `requests`, as OpenAI's request limits."""

    error_type = "requests"


class ServiceUnavailable(APIError):
    status_code = 503
    error_type = "server_error"


class ServerError(APIError):
    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str = "The server had an error while processing your request.") -> None:
        super().__init__(message)


def model_overloaded(model: str, retry_after_s: float | None) -> ServiceUnavailable:
    """A model deployment's queue is full (Serve's back-pressure): 503 with Serve's retry hint."""
    retry = max(1, math.ceil(retry_after_s or 1))
    return ServiceUnavailable(f"Model `{model}` is at capacity; retry in {retry} s.", code="model_overloaded",
                              headers={"Retry-After": str(retry)})


def model_unavailable(model: str) -> ServiceUnavailable:
    """A model replica stopped while answering (crashed, killed, or its node lost): safe to retry."""
    return ServiceUnavailable(f"Model `{model}` failed while answering (its replica stopped); please retry.",
                              code="model_unavailable", headers={"Retry-After": "1"})


def rate_limiter_unavailable() -> ServiceUnavailable:
    """The shared rate limiter did not answer (restarting after a crash): refused, never let through unmetered."""
    return ServiceUnavailable("The rate limiter is not answering; please retry shortly.",
                              code="rate_limiter_unavailable", headers={"Retry-After": "2"})


def store_unavailable() -> ServiceUnavailable:
    """The state store (usage, files, batches) cannot be reached or failed mid-query: retryable."""
    return ServiceUnavailable("The state store is unavailable; please retry shortly.", code="state_store_unavailable",
                              headers={"Retry-After": "5"})
