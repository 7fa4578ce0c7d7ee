"""Engine compute below the request path on a shared CPU.

On a CPU box the engine's matrix multiplies share the cores with the Serve proxy, the gateway and the replicas'
event loops. At equal priority a burst of requests crosses the gateway at the engine's pace, so it reaches the
engine spread out and prefills in pieces (bench/RESULTS.md, "Engine compute at a lower priority"). Raising the
compute thread's nice value lets the request path run first while the engine still gets every idle cycle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

MAX_NICE = 19


def lower_this_thread(increment: int) -> int | None:
    """Add `increment` to the calling thread's nice value (capped at 19); the thread's new value, or None where
    it cannot be changed.

    Linux keeps a nice value per thread and a thread inherits its creator's, so call this first thing in the
    engine's own compute thread: the OpenMP workers torch starts for it later run at the same value, while the
    replica's event loop keeps its own."""
    if not _applies(increment):
        return None
    try:
        return _lower(threading.get_native_id(), increment)
    except OSError as exc:  # a sandbox may forbid it: the engine runs as before
        log.warning("could not lower the compute thread's priority: %s", exc)
        return None


@contextlib.contextmanager
def lowered_processes_started_within(increment: int) -> Iterator[list[int]]:
    """Child processes this process starts inside the block (an engine whose compute runs in a process of its own:
    vLLM's engine core) end the block `increment` nice levels lower, every thread already running included; the
    list yielded holds their pids at the end. Threads they start later inherit the new values. Only processes
    new to the block are touched: an in-process gateway has other engines' processes as children too."""
    lowered: list[int] = []
    if not _applies(increment):
        yield lowered
        return
    import psutil  # only the vLLM engine starts child processes

    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield lowered
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        try:
            for thread in child.threads():
                _lower(thread.id, increment)
        except (OSError, psutil.Error) as exc:  # gone meanwhile, or a sandbox forbids it
            log.warning("could not lower the priority of engine process %d: %s", child.pid, exc)
            continue
        lowered.append(child.pid)


def _applies(increment: int) -> bool:
    return increment > 0 and sys.platform.startswith("linux")  # only Linux keeps a nice value per thread


def _lower(tid: int, increment: int) -> int:
    """Add `increment` to thread `tid`'s nice value, capped at 19; its new value (OSError where forbidden)."""
    target = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    os.setpriority(os.PRIO_PROCESS, tid, target)
    return target
