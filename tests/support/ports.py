"""Pick a free TCP port that no Ray process will claim after we pick it.

A port from the kernel's ephemeral range (bind to port 0) can be claimed by Ray itself once `serve run` starts:
Ray's dashboard agent always listens on 52365, and Ray's own gRPC servers bind port 0 too. CI once handed the
Serve proxy 52365 and every test that needed the cluster errored. So ports come from the gap between Ray's worker
ports (10002-19999) and the kernel's ephemeral range, which neither Ray nor the kernel hands out on its own.
"""

from __future__ import annotations

import random
import socket

RAY_WORKER_PORTS_END = 19999  # Ray's default max_worker_port

# A port handed out is bound only later (`serve run` binds its proxy ~20 s after we pick): never hand it out twice.
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port in (Ray's worker ports, the ephemeral range) that is free now; random, so parallel runs rarely meet."""
    low = RAY_WORKER_PORTS_END + 1
    high = max(_ephemeral_start() - 1, low + 9999)  # a box whose ephemeral range starts low still gets ports
    candidates = random.sample(range(low, high + 1), k=min(200, high - low + 1))
    for port in candidates:
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {low} and {high}")
