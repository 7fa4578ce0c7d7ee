"""What this box allows two speech replicas at best: the 10-minute file's two planned chunks (the coordinator's own
cuts) transcribed by faster-whisper in bare processes of one thread each, no Ray and no HTTP.

- one process, both chunks one after another (what one replica does);
- two processes at once, one chunk each (what two replicas do, with nothing else on the box);
- each chunk alone (the bound with no sharing at all).

The ratio of the first two is the ceiling for `bench.asr`'s 2-vs-1 replica figure on the same box; medians of
--repeats, interleaved.

    python -m bench.asr_ceiling
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.asr import long_speech, whisper_model
from deployments.audio_chunks import SAMPLE_RATE, DecodeBudget, iter_chunks, planned_chunk_seconds, probe
from tests.support.models import REPO


def worker() -> None:
    """Reads lines of .npy paths on stdin; transcribes them in order as the engine does; prints the seconds."""
    model = whisper_model(threads=1)
    print("ready", flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        for path in line.split():
            segments, _ = model.transcribe(np.load(path), language="en", beam_size=5, vad_filter=True)
            list(segments)
        print(f"{time.perf_counter() - start:.3f}", flush=True)


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.asr_ceiling", "--worker"], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, *paths: Path) -> None:
        self.proc.stdin.write(" ".join(map(str, paths)) + "\n")
        self.proc.stdin.flush()

    def seconds(self) -> float:
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-seconds", type=float, default=300.0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "asr_ceiling.json"))
    args = parser.parse_args()
    if args.worker:
        return worker()
    work = Path(tempfile.mkdtemp())
    audio = long_speech(work)[0].read_bytes()
    seconds = probe(audio, 14400, DecodeBudget(60)).seconds
    chunks = []
    for chunk in iter_chunks(audio, planned_chunk_seconds(seconds, args.chunk_seconds, 2), 14400):
        chunks.append(work / f"chunk{chunk.index}.npy")
        np.save(chunks[-1], chunk.samples)
    assert len(chunks) == 2, f"expected the 2 planned chunks, got {len(chunks)}"

    a, b = Worker(), Worker()
    times: dict[str, list[float]] = {"one_process_both_chunks": [], "two_processes_at_once": [],
                                     "longest_chunk_alone": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        a.send(*chunks)
        a.seconds()
        times["one_process_both_chunks"].append(time.perf_counter() - start)
        start = time.perf_counter()
        a.send(chunks[0])
        b.send(chunks[1])
        a.seconds(), b.seconds()
        times["two_processes_at_once"].append(time.perf_counter() - start)
        a.send(chunks[0])
        first = a.seconds()
        b.send(chunks[1])
        times["longest_chunk_alone"].append(max(first, b.seconds()))
    a.close()
    b.close()

    medians = {name: statistics.median(values) for name, values in times.items()}
    results = {"audio_s": seconds, "chunks_s": [float(len(np.load(c)) / SAMPLE_RATE) for c in chunks], "runs": times,
               "median_s": medians,
               "ceiling_two_vs_one": medians["one_process_both_chunks"] / medians["two_processes_at_once"],
               "no_sharing_two_vs_one": medians["one_process_both_chunks"] / medians["longest_chunk_alone"]}
    print(f"\n{'run (10-min file, 1 thread per process)':<44} {'median s':>9}")
    for name, value in medians.items():
        print(f"{name:<44} {value:>9.2f}")
    print(f"ceiling, two processes vs one: {results['ceiling_two_vs_one']:.2f}x "
          f"(no sharing at all: {results['no_sharing_two_vs_one']:.2f}x)")
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
