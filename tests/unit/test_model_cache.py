"""The model cache: a copy is made once and reused; copies of the same weights nothing has used for a month are
removed when another is used (each reinstall or upgrade of a model package makes a new one)."""

from __future__ import annotations

import os
import time

from deployments import model_source


def test_copies_unused_for_a_month_are_removed_and_recent_ones_kept(tmp_path):
    month_ago = time.time() - model_source.STALE_AFTER_S - 3600

    def copy(name: str, at: float | None = None):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (tmp_path / f"{name}.lock").write_text("")
        if at is not None:
            os.utime(folder, (at, at))
        return folder

    stale, recent = copy("Model.Q4_1-aaaa", month_ago), copy("Model.Q4_1-bbbb")
    other_model = copy("Other-cccc", month_ago)  # another model's copy: not this one's to remove
    made = []

    def make(tmp):
        made.append(tmp)
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")

    target = model_source._cached(tmp_path / "Model.Q4_1-dddd", make)
    assert made and (target / "config.json").exists()
    assert not stale.exists() and not (tmp_path / "Model.Q4_1-aaaa.lock").exists()
    assert recent.exists() and other_model.exists()
    assert model_source._cached(target, make) == target and len(made) == 1  # made once
