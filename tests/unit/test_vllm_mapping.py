"""How the vLLM engine maps requests and outputs, without vLLM: finish reasons and seeds."""

from __future__ import annotations

import pytest

from deployments.engines.vllm_engine import _finish, _sampling_fields
from serve_app.errors import ServerError
from serve_app.protocol.chat import ChatCompletionRequest

MSG = [{"role": "user", "content": "x"}]


def test_an_engine_side_failure_is_a_server_error_not_an_answer_that_looks_complete():
    with pytest.raises(ServerError):
        _finish("error")
    assert [_finish(r) for r in (None, "stop", "length", "abort", "repetition")] == [
        None, "stop", "length", "stop", "stop"]


@pytest.mark.parametrize(("seed", "n", "sent"), [
    (7, 4, 7), (2**64 - 1, 1, 2**64 - 1), (2**64 - 1, 2, -1), (2**64 - 3, 4, -3), (-(2**63), 8, -(2**63))])
def test_vllm_gets_a_seed_whose_choices_fit_64_bits(seed, n, sent):
    fields = _sampling_fields(ChatCompletionRequest(model="m", messages=MSG, seed=seed, n=n))
    assert fields["seed"] == sent and fields["seed"] + n - 1 < 2**64
