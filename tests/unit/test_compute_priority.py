"""The engine's compute thread lowers its own priority and no one else's (Linux keeps nice per thread)."""

from __future__ import annotations

import os
import threading

import pytest

from deployments.engines.compute_priority import MAX_NICE, lower_this_thread

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def run_in_thread(work):
    result = {}
    thread = threading.Thread(target=lambda: result.update(work()))
    thread.start()
    thread.join(10)
    return result


def test_lowers_only_the_calling_thread_and_threads_it_starts_inherit_it():
    base = nice_of(threading.get_native_id())

    def work():
        returned = lower_this_thread(3)
        child = run_in_thread(lambda: {"child": nice_of(threading.get_native_id())})
        return {"returned": returned, "own": nice_of(threading.get_native_id()), **child}

    result = run_in_thread(work)
    expected = min(MAX_NICE, base + 3)
    assert result == {"returned": expected, "own": expected, "child": expected}
    assert nice_of(threading.get_native_id()) == base  # the caller's thread (the event loop's) keeps its own


def test_zero_changes_nothing_and_the_value_is_capped():
    base = nice_of(threading.get_native_id())
    assert run_in_thread(lambda: {"returned": lower_this_thread(0), "own": nice_of(threading.get_native_id())}) == {
        "returned": None, "own": base}
    assert run_in_thread(lambda: {"returned": lower_this_thread(100)})["returned"] == MAX_NICE


CHILD_SCRIPT = """
import json, os, subprocess, sys, time
from deployments.engines.compute_priority import lowered_processes_started_within

code = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"

def start():
    child = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while len(os.listdir(f"/proc/{child.pid}/task")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # its second thread is running before the block ends
    return child

def nices(child):
    return [os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{child.pid}/task")]

older = start()  # another engine's process: not this block's
with lowered_processes_started_within(3) as lowered:
    engine = start()
print(json.dumps({"own": os.getpriority(os.PRIO_PROCESS, os.getpid()), "lowered": lowered, "engine": engine.pid,
                  "engine_threads": nices(engine), "older_threads": nices(older)}))
engine.kill()
older.kill()
"""


def test_processes_started_within_are_lowered_thread_by_thread_and_no_other():
    """vLLM's engine core is a child process with threads already running when the block ends. Run in a fresh
    interpreter: this test process's own children (other tests' servers) must not be touched."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", CHILD_SCRIPT], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2], check=True).stdout
    result = json.loads(out)
    own = result["own"]
    assert result["lowered"] == [result["engine"]]
    assert result["engine_threads"] == [min(MAX_NICE, own + 3)] * 2
    assert result["older_threads"] == [own, own]
