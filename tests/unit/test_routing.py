import pytest

from serve_app.errors import InvalidRequest, ModelNotFound
from serve_app.gateway.registry import ModelRegistry, ServedModel


@pytest.fixture
def registry():
    return ModelRegistry([ServedModel("chat-m", "text", "me", object()),
                          ServedModel("asr-m", "speech", "me", object())])


def test_lookup_and_cards(registry):
    assert registry.get("chat-m").kind == "text"
    cards = [m.card() for m in registry.models()]
    assert [c["id"] for c in cards] == ["chat-m", "asr-m"]
    assert cards[0]["object"] == "model" and cards[1]["capabilities"]["input"] == ["audio"]


def test_unknown_model_is_404(registry):
    with pytest.raises(ModelNotFound):
        registry.get("gpt-9")


def test_wrong_endpoint_for_model_kind_is_400(registry):
    registry.get("chat-m").require("chat")
    registry.get("asr-m").require("transcription")
    with pytest.raises(InvalidRequest, match="does not support audio transcriptions"):
        registry.get("chat-m").require("transcription")
    with pytest.raises(InvalidRequest, match="does not support chat completions"):
        registry.get("asr-m").require("chat")
    with pytest.raises(InvalidRequest, match="does not support image input"):
        registry.get("chat-m").require("image")
