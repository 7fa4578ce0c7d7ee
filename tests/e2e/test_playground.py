"""The Chat Playground in real headless Chromium against the real running service (`serve run`)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.keys import API_KEY
from tests.support.media import image_bytes
from tests.support.models import CHAT_MODEL, EMBEDDING_MODEL, MULTILINGUAL_SPEECH_MODEL, SPEECH_MODEL, VISION_MODEL

pytestmark = pytest.mark.e2e


def connect(page, url: str, key: str = API_KEY) -> None:
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/playground$"))
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")


def set_range(page, selector: str, value: str) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value)


def access_log_lines(logs: Path, request_id: str) -> list[str]:
    deadline = time.monotonic() + 20  # replica logs reach the files asynchronously
    while time.monotonic() < deadline:
        lines = [line for p in logs.rglob("*.log") for line in p.read_text(errors="replace").splitlines()
                 if f"request_id={request_id}" in line]
        if lines:
            return lines
        time.sleep(0.5)
    return []


def test_page_is_public_static_and_self_contained(serve_endpoint):
    page = httpx.get(serve_endpoint + "/playground", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"(src|href)=\"https?://", page.text)  # nothing from a CDN
    assert httpx.get(serve_endpoint + "/playground/playground.js", timeout=10).status_code == 200
    for other in ("/playground/app.py", "/playground/..%2fargs.py", "/playground/%2e%2e%2f%2e%2e%2fpyproject.toml"):
        assert httpx.get(serve_endpoint + other, timeout=10).status_code == 404, other
    assert httpx.get(serve_endpoint + "/", timeout=10, follow_redirects=False).headers["location"] == "/playground"


def test_chat_streams_with_the_slider_values(serve_run, page, artifacts_dir):
    serve_endpoint = serve_run.url
    connect(page, serve_endpoint)
    expect(page.locator("#key-state")).to_contain_text("connected")
    page.select_option("#model", CHAT_MODEL)
    set_range(page, "#temperature", "0.3")
    set_range(page, "#top_p", "0.85")
    set_range(page, "#top_k", "40")
    set_range(page, "#repetition_penalty", "1.15")
    page.fill("#max_tokens", "24")
    expect(page.locator("#code-text")).to_contain_text('"top_k":40')

    texts: list[str] = []
    page.expose_function("recordText", lambda text: texts.append(text))
    page.evaluate("""() => new MutationObserver(() => {
        const t = document.querySelector('.msg.assistant .text'); if (t) window.recordText(t.textContent);
    }).observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true})""")
    with page.expect_response("**/v1/chat/completions") as response_info:
        page.fill("#message", "What is the capital of France?")
        page.keyboard.press("Enter")
    request_id = response_info.value.headers["x-request-id"]
    expect(page.locator(".msg.assistant .meta")).to_contain_text("completion tokens", timeout=60_000)
    answer = page.locator(".msg.assistant .text").inner_text()
    assert answer and len(set(texts)) > 2  # text grew in several steps: it streamed
    expect(page.locator("#rate")).to_contain_text("Requests left")
    page.screenshot(path=str(artifacts_dir / "playground.png"), full_page=True)

    # Server side: the request that arrived carried the slider values.
    lines = access_log_lines(serve_run.session_dir / "logs", request_id)
    assert lines, f"no access-log line for {request_id}"
    logged = lines[-1]
    for field in ("'temperature': 0.3", "'top_p': 0.85", "'top_k': 40", "'repetition_penalty': 1.15",
                  "'max_tokens': 24"):
        assert field in logged, logged


def test_json_schema_mode_answers_json_that_follows_the_schema(serve_endpoint, page):
    connect(page, serve_endpoint)
    page.select_option("#model", CHAT_MODEL)
    set_range(page, "#temperature", "0")
    page.select_option("#response_format", "json_schema")
    expect(page.locator("#schema-box")).to_be_visible()
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    page.fill("#json_schema", json.dumps(schema))
    expect(page.locator("#code-text")).to_contain_text('"response_format":{"type":"json_schema"')
    page.fill("#message", "Which city is the capital of France?")
    page.click("#send")
    expect(page.locator(".msg.assistant .meta")).to_contain_text("finish: stop", timeout=60_000)
    answer = json.loads(page.locator(".msg.assistant .text").inner_text())
    assert set(answer) == {"city"} and isinstance(answer["city"], str)


def test_tool_calls_are_shown_and_invalid_json_is_refused_in_the_page(serve_endpoint, page):
    connect(page, serve_endpoint)
    page.select_option("#model", CHAT_MODEL)
    page.fill("#tools", "[not json")
    page.fill("#message", "Weather in Paris?")
    page.click("#send")
    expect(page.locator("#error")).to_contain_text("not valid JSON")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    page.fill("#tools", json.dumps(tools))
    page.select_option("#tool_choice", "required")
    set_range(page, "#temperature", "0")
    page.click("#send")
    expect(page.locator(".msg.assistant .meta")).to_contain_text("finish: tool_calls", timeout=60_000)
    expect(page.locator(".msg.assistant .tool-call")).to_contain_text("get_weather(")


def test_stop_aborts_a_stream(serve_endpoint, page):
    connect(page, serve_endpoint)
    page.select_option("#model", CHAT_MODEL)
    page.fill("#max_tokens", "400")
    page.fill("#message", "Write a long story about a dragon.")
    page.click("#send")
    expect(page.locator(".msg.assistant .text")).not_to_be_empty(timeout=60_000)
    page.click("#stop")
    expect(page.locator(".msg.assistant .meta")).to_have_text("stopped")
    expect(page.locator("#send")).to_be_enabled()


def test_wrong_key_shows_a_readable_401(serve_endpoint, page):
    connect(page, serve_endpoint, key="not-the-secret")
    expect(page.locator("#error")).to_contain_text("Invalid API secret")
    expect(page.locator("#error")).not_to_contain_text("{")
    expect(page.locator("#workspace")).to_be_hidden()


def test_audio_upload_shows_transcript_and_segments(serve_endpoint, page, speech_mp3_file):
    connect(page, serve_endpoint)
    page.select_option("#model", SPEECH_MODEL)
    expect(page.locator("#sampling")).to_be_hidden()
    page.set_input_files("#audio-file", str(speech_mp3_file))
    page.click("#transcribe")
    expect(page.locator("#transcript")).to_contain_text("fox", timeout=60_000)
    expect(page.locator("#segments tbody tr").first).to_be_visible()


def test_multilingual_speech_models_offer_translation(serve_endpoint, page, french_speech_file):
    connect(page, serve_endpoint)
    page.select_option("#model", SPEECH_MODEL)
    expect(page.locator("#task-picker")).to_be_hidden()  # English-only: no translation
    page.select_option("#model", MULTILINGUAL_SPEECH_MODEL)
    expect(page.locator("#task-picker")).to_be_visible()
    page.select_option("#speech-task", "translations")
    page.set_input_files("#audio-file", str(french_speech_file))
    with page.expect_response("**/v1/audio/translations") as response_info:
        page.click("#transcribe")
    assert response_info.value.status == 200
    expect(page.locator("#transcript")).to_contain_text("capital", timeout=60_000)
    page.select_option("#speech-task", "transcriptions")
    page.click("#transcribe")
    expect(page.locator("#transcript")).to_contain_text("capitale", timeout=60_000)
    expect(page.locator("#speech-language")).to_have_text("Spoken language: french")


def test_embedding_models_get_an_embedding_panel(serve_endpoint, page):
    connect(page, serve_endpoint)
    page.select_option("#model", EMBEDDING_MODEL)
    expect(page.locator("#chat-panel")).to_be_hidden()
    page.fill("#embedding-input", "A man is playing a guitar.\nSomeone plays the guitar.\nInterest rates rose.")
    page.click("#embed")
    rows = page.locator("#embeddings tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("384")
    expect(rows.nth(0).locator("td").nth(3)).to_have_text("1.000")
    expect(page.locator("#embedding-usage")).to_contain_text("tokens")


def test_oversized_image_is_refused_in_the_page(serve_endpoint, page, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 21_000_000)
    connect(page, serve_endpoint)
    page.select_option("#model", VISION_MODEL)
    page.set_input_files("#image-file", str(big))
    expect(page.locator("#error")).to_contain_text("File too large")
    expect(page.locator("#attachment")).to_be_hidden()


def test_image_chat_from_the_file_picker(serve_endpoint, page, tmp_path):
    picture = tmp_path / "picture.webp"
    picture.write_bytes(image_bytes("webp"))
    connect(page, serve_endpoint)
    page.select_option("#model", VISION_MODEL)
    page.set_input_files("#image-file", str(picture))
    expect(page.locator("#attachment")).to_be_visible()
    page.fill("#max_tokens", "4")
    with page.expect_response("**/v1/chat/completions") as response_info:
        page.fill("#message", "What's in this image?")
        page.click("#send")
    assert response_info.value.status == 200
    expect(page.locator(".msg.user img")).to_be_visible()
    expect(page.locator(".msg.assistant .meta")).to_contain_text("completion tokens", timeout=60_000)


def test_microphone_recording_is_transcribed(serve_endpoint, browser):
    """Chromium's fake microphone (a tone) through MediaRecorder webm, as a user records in the page."""
    context = browser.new_context(permissions=["microphone"])
    page = context.new_page()
    try:
        connect(page, serve_endpoint)
        page.select_option("#model", SPEECH_MODEL)
        page.click("#record")
        expect(page.locator("#recording-state")).to_have_text("Recording…")
        page.wait_for_timeout(2500)
        page.click("#record")
        expect(page.locator("#recording-state")).to_contain_text("Recorded")
        with page.expect_response("**/v1/audio/transcriptions") as response_info:
            page.click("#transcribe")
        assert response_info.value.status == 200  # browser webm without a duration header is accepted
        expect(page.locator("#transcript")).not_to_have_text("Transcribing…")
        expect(page.locator("#error")).to_be_hidden()
    finally:
        context.close()
