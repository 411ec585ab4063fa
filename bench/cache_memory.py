"""How much Python heap the process cache needs per live process.

Target: at most 2 KB per live process on average at 10k processes.
Baseline, measured in the same run: the same events as the decoder hands
them over, merely kept in a list (no tree, no indexes, no sharing).

    .venv/bin/python bench/cache_memory.py [--processes 10000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc

import msgspec

from procscope.cache import ROOT, ProcessCache
from procscope.probes import wire
from procscope.probes.events import (
    Capabilities,
    Credentials,
    ExecEvent,
    Namespaces,
    ProcessKey,
    UserNamespace,
)  # fmt: skip

TARGET_BYTES = 2048


def events(n: int) -> list[ExecEvent]:
    """n processes as a busy host has them: shells and servers, each with
    workers, a fifth in containers; every object built fresh, as decoding
    builds them."""
    out = []
    per_parent = 50
    for i in range(n):
        pid = 1000 + i
        leader = i % per_parent == 0
        parent = (
            ProcessKey(1, 10) if leader or i == 0 else ProcessKey(1000 + i - i % per_parent, 1000 + i - i % per_parent)
        )
        group = i // per_parent
        in_container = group % 5 == 0
        uid = 0 if group % 3 else 1000 + group % 7
        caps = (1 << 41) - 1 if uid == 0 else 0
        ns_base = 4026532000 + group * 10 if in_container else 4026531830
        cgroup = (
            f"/system.slice/docker-{group:064x}.scope"
            if in_container
            else f"/user.slice/user-{uid}.slice/session-{group}.scope"
        )
        out.append(ExecEvent(
            time=pid, key=ProcessKey(pid, pid), tid=pid, nspid=pid - 999 if in_container else pid, uid=uid,
            auid=0xFFFFFFFF, flags=wire.FLAG_EXECVE, privileges=0, nlink=1, ino=100 + group,
            binary=f"/usr/bin/{'python3' if leader else 'worker'}{group % 20}",
            args=tuple(f"--opt{j}=value-{pid}-{j}" for j in range(4)),
            cwd=f"/srv/app{group % 30}",
            parent=parent, cleanup=ProcessKey(pid, pid),
            creds=Credentials(uid, uid, uid, uid, uid, uid, uid, uid, 0, Capabilities(caps, caps, 0),
                              UserNamespace(0, 0, 0, 4026531837)),
            ns=Namespaces(*(ns_base + k for k in range(10))),
            cgroup_id=5000 + group, cgroup_tracker_id=5000 + group, cgroup_name=cgroup.rsplit("/", 1)[1],
            cgroup_path=f"{cgroup}",
        ))  # fmt: skip
    return out


def measure(build) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=10_000)
    n = ap.parse_args().processes

    def baseline():
        return events(n)

    def cached():
        cache = ProcessCache(host_ns={})
        # init, the parent of the leaders
        cache.apply(
            msgspec.structs.replace(events(1)[0], key=ProcessKey(1, 10), parent=ROOT, cleanup=None, binary="/sbin/init")
        )
        for ev in events(n):
            cache.apply(ev)
        return cache

    base_bytes, _ = measure(baseline)
    cache_bytes, cache = measure(cached)
    live = sum(1 for _ in cache.live())
    per = cache_bytes / live
    print(f"live processes               {live}")
    print(f"baseline (events in a list)  {base_bytes / n:8.0f} B/process")
    print(f"process cache                {per:8.0f} B/process  (target ≤ {TARGET_BYTES})")
    print(f"cache / baseline             {cache_bytes / base_bytes:8.2f}")
    ok = per <= TARGET_BYTES
    print(f"RESULT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
