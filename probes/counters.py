"""Everything lost, and where: one record, with its totals, for the
monitor, the exporters, the command's summary and the benchmarks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Counters:
    """``sent_failed[op][errno]`` is the kernel side, summed over CPUs; the
    rest is user space. ``cache`` holds the process cache's own counts
    (misses, lost exits...) when a cache was fed from these events."""

    sent_failed: dict[str, dict[str, int]] = field(default_factory=dict)
    decode_errors: int = 0
    userspace_dropped: int = 0  # events in batches the consumer was too slow for
    # Another machine's (--connect): events its agent could not send us (its queue for us was full).
    agent_dropped: int = 0
    exec_map_full: int = 0  # processes whose state did not fit the BPF map (keys fell back to start times)
    # Records the ring refused with room to spare (its lock gave up), sent through the spare ring: not lost.
    sent_spare: int = 0
    received: int = 0
    by_type: dict[str, int] = field(default_factory=dict)  # events received, by Tetragon's type name
    # Processes the /proc scan could not read (gone half-way, or unparsable):
    # missing from the tree until they exec, clone or exit.
    procfs_unreadable: int = 0
    # Failures of the collector thread itself (it reports and carries on);
    # the events of the failed poll may be lost.
    collector_errors: int = 0
    last_error: str = ""
    # The rate limit's suppressed events: totals per op, and per cgroup
    # (name → per-op counts) for the cgroups throttled so far.
    suppressed: dict[str, int] = field(default_factory=dict)
    suppressed_by_cgroup: dict[str, dict[str, int]] = field(default_factory=dict)
    throttled_now: list[str] = field(default_factory=list)  # cgroups throttled right now
    cache: dict[str, int] = field(default_factory=dict)

    @property
    def kernel_dropped(self) -> int:
        return sum(sum(row.values()) for row in self.sent_failed.values())

    @property
    def lost(self) -> int:
        """Events that never reached the cache."""
        return (self.kernel_dropped + self.decode_errors + self.userspace_dropped + self.collector_errors
                + self.agent_dropped)  # fmt: skip

    def where_lost(self) -> list[tuple[str, int]]:
        """(where, how many) of every loss that happened, kernel ops and errnos first."""
        out = [(f"kernel {err} on {op}", n) for op, row in self.sent_failed.items() for err, n in row.items() if n]
        for where, n in (("user-space queue", self.userspace_dropped), ("undecodable", self.decode_errors),
                         ("collector failures", self.collector_errors), ("agent's queue", self.agent_dropped)):  # fmt: skip
            if n:
                out.append((where, n))
        return out

    def to_json(self) -> dict:
        out = asdict(self)
        if not self.cache:
            del out["cache"]
        return out

    @classmethod
    def from_json(cls, doc) -> Counters:
        """A recorded counters object: unknown keys ignored; a missing or
        malformed value (a recording is input like any other) counts 0."""
        doc = doc if isinstance(doc, dict) else {}

        def counts(v) -> dict[str, int]:
            return {str(k): _count(n) for k, n in v.items()} if isinstance(v, dict) else {}

        def nested(v) -> dict[str, dict[str, int]]:
            return {str(k): counts(row) for k, row in v.items()} if isinstance(v, dict) else {}

        out = cls(sent_failed=nested(doc.get("sent_failed")), suppressed=counts(doc.get("suppressed")),
                  by_type=counts(doc.get("by_type")),
                  suppressed_by_cgroup=nested(doc.get("suppressed_by_cgroup")), cache=counts(doc.get("cache")),
                  last_error=str(doc.get("last_error", "")))  # fmt: skip
        now = doc.get("throttled_now")
        out.throttled_now = [str(x) for x in now] if isinstance(now, list) else []
        for f in fields(cls):
            if f.type == "int":
                setattr(out, f.name, _count(doc.get(f.name, 0)))
        return out


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
