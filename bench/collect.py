"""The collector alone, as bench/cost.py runs it beside a workload: the
probes attached, the /proc scan taken, every batch applied to a process
cache as the monitor's feed does; nothing drawn, nothing written. Says
"collecting" on stderr once attached; at SIGTERM, its losses and ends.

With ``--write SIZE FILE``, a line of SIZE bytes for each exec and exit,
written as `procscope events -o FILE` writes its lines (StreamFile,
flushed every second) but made for nothing: what `events -o FILE` would
cost if making its lines were free (bench/cost.py's floor for it).

    sudo .venv/bin/python bench/collect.py [--write SIZE FILE]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from procscope import heap
from procscope.cache import ProcessCache
from procscope.probes.collector import Collector
from procscope.probes.events import ExecEvent, ExitEvent
from procscope.stream_files import StreamFile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", nargs=2, metavar=("SIZE", "FILE"), help="a SIZE-byte line per exec and exit to FILE")
    args = ap.parse_args()
    out = StreamFile(args.write[1]) if args.write else None
    line = b"x" * int(args.write[0]) if args.write else b""
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
                    if out is not None and type(ev) in (ExecEvent, ExitEvent):
                        out.write(line)
                cache.expire(cache.now)
                if out is not None:
                    out.flush()
                full.due()
    finally:
        collector.stop()
        if out is not None:
            out.close()
    print(f"lost {collector.counters().lost}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
