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
