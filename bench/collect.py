"""The collector alone, as bench/cost.py runs it beside a workload: the
probes attached, the /proc scan taken, every batch applied to a process
cache as the monitor's feed does; nothing drawn, nothing written. Says
"collecting" on stderr once attached; at SIGTERM, its losses and ends.

    sudo .venv/bin/python bench/collect.py
"""

from __future__ import annotations

import signal
import sys
import threading

from procscope import heap
from procscope.cache import ProcessCache
from procscope.probes.collector import Collector


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    collector, cache = Collector(), ProcessCache()
    collector.start()
    print("collecting", file=sys.stderr, flush=True)
    try:
        with heap.settled() as full:  # as every live command collects garbage
            while not stop.is_set():
                for ev in collector.get_batch(timeout=0.1) or ():
                    cache.apply(ev)
                cache.expire(cache.now)
                full.due()
    finally:
        collector.stop()
    print(f"lost {collector.counters().lost}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
