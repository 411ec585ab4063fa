"""A batch's execs and exits are written once the whole batch is applied
(EventStream.feed): the lines must be those of each event as it happened,
whatever comes later in the batch (no root)."""

from __future__ import annotations

import json

import pytest

from procscope.cache import ProcessCache
from procscope.probes import wire
from procscope.probes.events import CapSets, CgroupEvent, CredsEvent
from procscope.stream import EventStream, Output

from .factories import DOCKER, HOST_NS, K, S, clone_event, creds, exec_event, exit_event, namespaces, session


class Lines:
    def __init__(self):
        self.lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _history() -> list:
    """A session, then a storm of one parent's children (its refcnt
    different at each child's line), and in the same batch what changes a process
    after its exec line is due: its credentials, its cgroup (into a
    container), a newer image under its key, and a parent described after
    its child's exec (a placeholder's)."""
    events = session()
    parent = K(500, 3 * S)
    events.append(exec_event(500, 3 * S, K(1, 10), "/usr/bin/make"))
    for i in range(40):
        child, image = K(600 + i, 4 * S + 10 * i), K(600 + i, 4 * S + 10 * i + 1)
        events += [
            clone_event(child.pid, child.ktime, parent),
            exec_event(child.pid, image.ktime, parent, "/bin/cc", ("-c", f"{i}.c"), cleanup=child),
        ]
        if i % 3:
            events.append(exit_event(image, 5 * S + i))
    changed = K(700, 6 * S)
    events += [
        exec_event(700, changed.ktime, parent, "/usr/bin/su", uid=1000, caps=0),
        CredsEvent(6 * S + 1, changed, 700, "setuid", creds(0), namespaces(), CapSets(2**41 - 1, 0), CapSets(0, 0)),
        exec_event(701, 6 * S + 2, parent, "/bin/moved"),
        CgroupEvent(6 * S + 3, wire.CGROUP_ATTACH_TASK, 701, 701, 0, 77, 77, 3, 0, DOCKER.rsplit("/", 1)[-1], DOCKER),
        exit_event(K(701, 6 * S + 2), 6 * S + 3),
        exec_event(702, 6 * S + 4, parent, "/bin/first"),
        exec_event(702, 6 * S + 4, parent, "/bin/again", time=6 * S + 5),  # the same key, a newer image
        exec_event(801, 6 * S + 7, K(800, 6 * S + 6), "/bin/orphan"),  # its parent not known yet: a placeholder
        exec_event(800, 6 * S + 6, K(1, 10), "/bin/late", time=6 * S + 8),  # ... described now
        exit_event(K(801, 6 * S + 7), 7 * S),
        exit_event(parent, 8 * S),
    ]
    return events


def _lines(events: list, batch: int, kinds: frozenset[str]) -> list[dict]:
    sink = Lines()
    cache = ProcessCache(grace_ns=60 * S, host_ns=HOST_NS, cgroup_hierarchy=0)  # nothing expires between batches
    stream = EventStream(cache, [Output(sink, kinds)])
    stream.exporter.wall_offset = 0  # times as the events give them, in every stream alike
    for i in range(0, len(events), batch):
        stream.feed(events[i : i + batch])
    return [json.loads(line) for line in sink.lines]


@pytest.mark.parametrize("kinds", [{"exec", "exit"}, {"exec", "exit", "clone", "creds", "cgroup"}])
def test_a_batch_writes_what_each_event_showed_when_it_happened(kinds):
    events = _history()
    one_by_one = _lines(events, 1, frozenset(kinds))
    assert _lines(events, len(events), frozenset(kinds)) == one_by_one
    assert _lines(events, 7, frozenset(kinds)) == one_by_one
    # What a batch would get wrong if it read the processes as the batch left them:
    execs = [e["process_exec"] for e in one_by_one if "process_exec" in e]
    exits = [e["process_exit"] for e in one_by_one if "process_exit" in e]
    storm = [e["parent"]["refcnt"] for e in execs if e["process"].get("binary") == "/bin/cc"]
    assert len(storm) == 40 and storm == sorted(storm) and storm[0] < storm[-1]
    (su,) = [e for e in execs if e["process"].get("binary") == "/usr/bin/su"]
    assert su["process"]["uid"] == 1000  # its setuid(0) came later
    (moved,) = [e for e in execs if e["process"].get("binary") == "/bin/moved"]
    (moved_exit,) = [e for e in exits if e["process"].get("binary") == "/bin/moved"]
    assert moved["process"]["procscope"]["cgroup"]["path"] == "/"
    assert moved_exit["process"]["procscope"]["cgroup"]["path"] == DOCKER
    assert [e["process"].get("binary") for e in execs if e["process"]["pid"] == 702] == ["/bin/first", "/bin/again"]
    (orphan,) = [e for e in execs if e["process"].get("binary") == "/bin/orphan"]
    (orphan_exit,) = [e for e in exits if e["process"].get("binary") == "/bin/orphan"]
    assert orphan["parent"]["flags"] == "miss" and orphan_exit["parent"].get("binary") == "/bin/late"
