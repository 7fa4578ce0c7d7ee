"""Cold start: `make run` until the endpoint answers /v1/models, a chat completion and a transcription.

    python -m bench.cold_start --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.media import speech_wav
from tests.support.models import CHAT_MODEL, REPO, SPEECH_MODEL
from tests.support.servers import stop_process_group

KEY = "cold-start-bench"
URL = "http://127.0.0.1:8000"


def first_success(probe, start: float, timeout: float = 600) -> float:
    while time.perf_counter() - start < timeout:
        try:
            if probe().status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("endpoint never answered")


def one_run(audio: bytes) -> dict:
    env = {**os.environ, "ENDPOINT_API_KEYS": KEY, "RAY_USAGE_STATS_ENABLED": "0"}
    log = tempfile.NamedTemporaryFile(prefix="make-run-", suffix=".log", delete=False)
    start = time.perf_counter()
    proc = subprocess.Popen(["make", "-s", "run"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    headers = {"x-api-key": KEY}
    try:
        models = first_success(lambda: httpx.get(URL + "/v1/models", headers=headers, timeout=2), start)
        chat = first_success(lambda: httpx.post(URL + "/v1/chat/completions", headers=headers, timeout=300, json={
            "model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
            start)
        speech = first_success(lambda: httpx.post(URL + "/v1/audio/transcriptions", headers=headers, timeout=300,
                                                  data={"model": SPEECH_MODEL},
                                                  files={"file": ("a.wav", audio)}), start)
    finally:
        stop_process_group(proc)
    return {"models_s": models, "first_chat_s": chat, "first_transcription_s": speech}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cold_start.json"))
    args = parser.parse_args()
    audio = speech_wav(Path(tempfile.mkdtemp()) / "a.wav", "Hello there.").read_bytes()
    runs = []
    for i in range(args.runs):
        runs.append(one_run(audio))
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.1f}" for k, v in runs[-1].items()), flush=True)
        time.sleep(3)  # let the previous Ray cluster release its ports
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"\n{'stage':<24} {'median s':>8}")
    for k, v in medians.items():
        print(f"{k:<24} {v:>8.1f}")
    Path(args.out).write_text(json.dumps({"runs": runs, "median": medians}, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
