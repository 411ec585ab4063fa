"""Prometheus metrics (`--metrics ADDR` on every live command): what the
command counts, read when scraped, under Tetragon's names with a
`procscope_` prefix, served by prometheus-client on its own thread."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from procscope.cache import ProcessCache
from procscope.container_usage import ContainerReader
from procscope.probes import wire
from procscope.probes.counters import Counters
from procscope.probes.events import CloneEvent, ExecEvent, ExitEvent, ThrottleEvent

PREFIX = "procscope"
TYPES = tuple(t.TYPE for t in (ExecEvent, ExitEvent, CloneEvent, ThrottleEvent))  # 0 until the first


class MetricsError(OSError):
    pass


class CountersCollector:
    """A prometheus-client collector reading the command's Counters and cache at each scrape."""

    def __init__(self, counters: Callable[[], Counters], cache: ProcessCache):
        self.counters = counters
        self.cache = cache
        self._cgroups = ContainerReader()

    def collect(self) -> Iterator[Metric]:
        for _ in range(3):  # the collector thread may change a dict while it is read: read again
            try:
                c = self.counters()
                break
            except RuntimeError:
                continue
        else:
            return
        missed = CounterMetricFamily(f"{PREFIX}_bpf_missed_events", "Ring-buffer sends that failed in the kernel, by message op and errno",
                                     labels=["msg_op", "error"])  # fmt: skip
        for op in (wire.OP_NAMES[o] for o in (wire.OP_EXECVE, wire.OP_EXIT, wire.OP_CLONE)):
            c.sent_failed.setdefault(op, {})
        for op, row in c.sent_failed.items():
            for err in wire.SENT_FAILED_NAMES:
                missed.add_metric([op, err], row.get(err, 0))
        yield missed
        events = CounterMetricFamily(f"{PREFIX}_events", "Events received from the kernel, by type", labels=["type"])
        for name in dict.fromkeys([*TYPES, *c.by_type]):
            events.add_metric([name], c.by_type.get(name, 0))
        yield events
        for name, value, text in (
            ("userspace_dropped_events", c.userspace_dropped, "Events dropped in user space (the consumer too slow for the queue)"),
            ("decode_errors", c.decode_errors, "Records that could not be decoded"),
            ("collector_errors", c.collector_errors, "Failures of the collector thread (it carries on)"),
            ("procfs_unreadable", c.procfs_unreadable, "Processes the /proc scan could not read"),
            ("exec_map_full", c.exec_map_full, "Processes whose state did not fit the BPF map"),
            ("bpf_sent_spare", c.sent_spare, "Records the main ring buffer refused and the spare one took (not lost)"),
            ("cache_misses", c.cache.get("misses", 0), "Events naming a process the cache never saw"),
            ("lost_exits", c.cache.get("lost_exits", 0), "Exits never seen (a pid reused first)"),
            ("enrichment_failures", c.cache.get("enrichment_failures", 0),
             "Container descriptions not read: a runtime file or daemon not trusted, or no answer in time"),
        ):  # fmt: skip
            yield CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)
        suppressed = CounterMetricFamily(f"{PREFIX}_suppressed_events", "Events the per-cgroup rate limit suppressed, by op",
                                         labels=["msg_op"])  # fmt: skip
        for op, msg_op in zip(wire.RATE_OPS, ("EXECVE", "CLONE", "EXIT"), strict=True):
            suppressed.add_metric([msg_op], c.suppressed.get(op, 0))
        yield suppressed
        yield from self.containers()
        yield GaugeMetricFamily(f"{PREFIX}_throttled_cgroups", "Cgroups throttled now", value=len(c.throttled_now))
        yield GaugeMetricFamily(f"{PREFIX}_processes", "Live processes in the cache", value=len(self.cache.by_pid))
        yield GaugeMetricFamily(
            f"{PREFIX}_containers", "Containers with live processes", value=len(self.cache.containers)
        )

    def containers(self) -> Iterator[Metric]:
        """What each container with live processes uses, read from its cgroup at the scrape
        (as `docker stats`): series come and go with the containers, none for the gone."""
        index = self.cache.cgroup_index
        for _ in range(3):  # the collector thread may change the cgroups while they are read
            try:
                cgroups = index.container_cgroups()
                break
            except RuntimeError:
                continue
        else:
            return
        labels = ["container_id", "container_name"]
        cpu = CounterMetricFamily(f"{PREFIX}_container_cpu_seconds", "CPU time of a container's processes (its cgroup's)",
                                  labels=labels)  # fmt: skip
        memory = GaugeMetricFamily(f"{PREFIX}_container_memory_bytes",
                                   "Memory a container uses, less the inactive file cache (docker stats')", labels=labels)  # fmt: skip
        limit = GaugeMetricFamily(f"{PREFIX}_container_memory_limit_bytes", "A container's memory limit, when set",
                                  labels=labels)  # fmt: skip
        pids = GaugeMetricFamily(f"{PREFIX}_container_pids", "Tasks in a container's cgroup", labels=labels)
        now = time.monotonic_ns()
        for cid, path in sorted(cgroups.items()):
            u = self._cgroups.read(path, now)
            info = index.info.get(cid)  # as described already: no runtime is asked from this thread
            names = [cid[:12], info.name if info is not None and info.name else ""]
            for family, value in ((cpu, u.cpu_ns and u.cpu_ns / 1e9), (memory, u.mem_used), (limit, u.mem_limit),
                                  (pids, u.pids)):  # fmt: skip
                if value is not None:
                    family.add_metric(names, value)
        self._cgroups.forget(set(cgroups.values()))
        yield from (cpu, memory, limit, pids)


def serve(address: tuple[str, int], counters: Callable[[], Counters], cache: ProcessCache) -> int:
    """Serve /metrics at (host, port) (MetricsError, one line, when it cannot);
    returns the port bound (port 0: a free one)."""
    host, port = address
    registry = CollectorRegistry()
    registry.register(CountersCollector(counters, cache))
    ProcessCollector(namespace=PREFIX, registry=registry)  # procscope's own CPU and memory
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except (OSError, socket.gaierror) as exc:
        raise MetricsError(
            f"--metrics {host}:{port}: cannot listen there ({exc.strerror or exc}); choose another port"
        ) from None
    return server.server_port
