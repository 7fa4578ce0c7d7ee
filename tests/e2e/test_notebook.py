"""notebooks/quickstart.ipynb runs top to bottom against the running CPU default, without errors."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.keys import API_KEY
from tests.support.models import REPO

pytestmark = pytest.mark.e2e
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def outputs_text(cell) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)


def test_quickstart_notebook_executes(serve_endpoint, speech_mp3_file, monkeypatch, artifacts_dir):
    monkeypatch.setenv("ENDPOINT_URL", serve_endpoint)
    monkeypatch.setenv("ENDPOINT_API_KEY", API_KEY)
    monkeypatch.setenv("AUDIO_FILE", str(speech_mp3_file))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
                   ).execute()  # raises CellExecutionError on any failing cell
    nbformat.write(notebook, artifacts_dir / "quickstart.executed.ipynb")
    printed = "\n".join(outputs_text(c) for c in notebook.cells if c.cell_type == "code")
    assert "Paris" in printed or "completion_tokens" in printed
    assert "fox" in printed.lower()  # the transcription ran on the test recording
    assert "401" in printed and "404" in printed
