"""One check of the OpenAI error envelope, for every test that expects an error over HTTP."""

from __future__ import annotations

import httpx


def assert_error(r: httpx.Response, status: int, code: str | None, param: str | None = None,
                 text: str = "") -> dict:
    """The response is `status` with OpenAI's envelope, `code`, `param` (when given) and `text` in its message."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    assert text.lower() in err["message"].lower(), err
    assert r.headers.get("x-request-id")
    return err
