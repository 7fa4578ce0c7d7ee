import json
import pickle

from serve_app.errors import (
    AuthenticationFailed,
    FileTooLarge,
    InvalidRequest,
    ModelNotFound,
    ServerError,
    UnsupportedFileType,
)
from serve_app.gateway.errors import error_response


def test_envelope_shape_and_status():
    resp = error_response(ModelNotFound("nope"), request_id="req-1")
    body = json.loads(resp.body)
    assert resp.status_code == 404
    assert body == {"error": {"message": "The model `nope` does not exist or you do not have access to it.",
                              "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    assert resp.headers["x-request-id"] == "req-1"


def test_codes_are_strings_or_null():
    for err, status, code in [
        (AuthenticationFailed(), 401, "invalid_api_key"),
        (FileTooLarge("file too large: x"), 413, "file_too_large"),
        (UnsupportedFileType("unsupported file type: x"), 415, "unsupported_file_type"),
        (InvalidRequest("x"), 400, None),
        (ServerError(), 500, None),
    ]:
        assert err.status_code == status
        assert err.body()["error"]["code"] == code


def test_server_error_is_generic():
    assert ServerError().body()["error"] == {
        "message": "The server had an error while processing your request.", "type": "server_error",
        "param": None, "code": None}


def test_errors_survive_pickling_across_processes():
    err = InvalidRequest("too long", param="messages", code="context_length_exceeded")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is InvalidRequest and again.body() == err.body()


def test_errors_whose_constructors_take_other_arguments_survive_pickling_too():
    from serve_app.errors import MethodNotAllowed, NotFound, RouteNotFound

    for err in (ModelNotFound("m"), NotFound("file", "file-1", param="file_id"), ServerError(),
                RouteNotFound("GET", "/x"), MethodNotAllowed("PUT", "/v1/models"), AuthenticationFailed()):
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and again.body() == err.body() and again.headers == err.headers
