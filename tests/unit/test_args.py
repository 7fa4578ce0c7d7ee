
import pytest
from pydantic import ValidationError

from serve_app.config import AppArgs

MODEL = {"id": "m", "kind": "text", "engine": "transformers", "source": {"path": "/x"}}


@pytest.mark.parametrize("change, fragment", [
    ({"engine": "faster-whisper"}, "cannot serve kind"),
    ({"id": "bad id"}, "model id"),
    ({"source": {"hub": "a/b", "path": "/x"}}, "exactly one of"),
    ({"source": {"builder": "tiny-random-idefics3", "package": "x"}}, "exactly one of"),
    ({"source": {"builder": "gpt-5"}}, "builder"),
    ({"source": {}}, "exactly one of"),
    ({"max_images_per_request": 0}, "greater than or equal to 1"),
    ({"surprise": 1}, "Extra inputs"),
    ({"stream_items_per_s": 0}, "greater than or equal to 1"),
    ({"kind": "embedding", "stream_items_per_s": 50}, "apply to text and multimodal models only"),
])
def test_bad_model_entries_fail(change, fragment):
    with pytest.raises(ValidationError, match=fragment):
        AppArgs.model_validate({"models": [{**MODEL, **change}]})


def test_duplicate_ids_and_bad_hashes_fail():
    with pytest.raises(ValidationError, match="duplicate"):
        AppArgs.model_validate({"models": [MODEL, MODEL]})
    with pytest.raises(ValidationError, match="same deployment name"):
        AppArgs.model_validate({"models": [{**MODEL, "id": "org/m"}, {**MODEL, "id": "org-m"}]})
    with pytest.raises(ValidationError, match="sha256"):
        AppArgs.model_validate({"models": [MODEL], "api_keys": [{"name": "a", "sha256": "secret"}]})
    with pytest.raises(ValidationError, match="unknown models"):
        AppArgs.model_validate({"models": [MODEL], "api_keys": [{"name": "a", "sha256": "0" * 64, "models": ["x"]}]})


def test_every_shipped_model_survives_the_trip_to_its_replica():
    """Replicas validate `model_dump()` of what the builder validated: every field is set there."""
    from serve_app.config import ModelConfig
    from tests.support.models import SHIPPED_CONFIGS, app_args

    for path in SHIPPED_CONFIGS:
        for model in app_args(path)["models"]:
            config = ModelConfig.model_validate(model)
            assert ModelConfig.model_validate(config.model_dump()) == config
