"""The process pane's rows: the incremental TreeModel against computations
from scratch after random event sequences, grouping by container and
cgroup, the cursor staying on its process, the g key, and the live
source's first drain holding the /proc scan."""

import gc
import os
import weakref

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procscope import describe
from procscope.cache import ROOT, ProcessCache
from procscope.probes import wire
from procscope.probes.events import ExecEvent
from procscope.probes.events import ProcessKey as K
from procscope.query import Query
from procscope.subtree_usage import SubtreeRates
from procscope.tui.app import ProcscopeApp
from procscope.tui.columns import DEFAULT, Context, fit
from procscope.tui.panes.process_tree import _Lines, group_text, row_text
from procscope.tui.rows import GROUPS, MAX_GUIDE, Group, Rows, TreeModel, ViewOptions, view_rows
from procscope.tui.sources import LiveSource, Source
from procscope.tui.widgets.rows_view import RowsView

from .conftest import SIZE, open_collector, pids, plain, screen_text
from .factories import DOCKER, HOST_NS, clone_event, exec_event, exit_event, namespaces

S = 1_000_000_000
OTHER = "/system.slice/docker-" + "9b" * 32 + ".scope"
CGROUPS = ["/init.scope", DOCKER, OTHER, "/user.slice/session-1.scope"]
BINARIES = ["/bin/sh", "/usr/bin/curl", "/bin/busybox"]
QUERIES = [None, Query.parse("bin:curl"), Query.parse("container:3f2a"), Query.parse("-bin:sh")]


def process_rows(cache: ProcessCache, match, opts: ViewOptions) -> Rows:
    """The process pane's rows, from scratch (TreeModel keeps them between frames)."""
    order = list(cache.walk())
    return view_rows(cache, [p for _, p in order], [d for d, _ in order], match, opts)


def reference_rows(cache, match, opts) -> list[tuple]:
    """The tree and the flat list as the first UI built them, from scratch:
    (key, depth, folded)."""
    if not opts.tree:
        sort = {
            "USER": lambda p: (describe.user(p), p.pid, p.key.ktime),
            "COMMAND": lambda p: (p.binary, p.args, p.pid, p.key.ktime),
            "START": lambda p: (p.key.ktime, p.pid, p.key.ktime),
        }.get(opts.sort, lambda p: (p.pid, p.pid, p.key.ktime))
        shown = (p for p in cache.visible() if match is None or match(p))
        return [(p.key, 0, False) for p in sorted(shown, key=sort, reverse=opts.reverse)]
    order = list(cache.walk())
    keep = None
    if match is not None:
        keep = set()
        for _, p in reversed(order):
            if match(p) or (p.children and any(c.key in keep for c in p.children.values())):
                keep.add(p.key)
    rows, skip_below = [], None
    for depth, p in order:
        if skip_below is not None:
            if depth > skip_below:
                continue
            skip_below = None
        if keep is not None and p.key not in keep:
            continue
        folded = p.key in opts.collapsed
        rows.append((p.key, depth, folded))
        if folded:
            skip_below = depth
    return rows


def signature(rows) -> list[tuple]:
    return [(r.key, r.live, r.shown) if isinstance(r, Group) else (r.proc.key, r.depth, r.folded) for r in rows]


def rendered(text) -> tuple:
    return text.plain, str(text.style), [(s.start, s.end, str(s.style)) for s in text.spans]


class Machine:
    """Applies random operations to a cache: execs, clones, re-execs,
    exits, lost exits (placeholders), pid reuse, and time passing."""

    def __init__(self):
        self.cache = ProcessCache(grace_ns=3 * S, host_ns=HOST_NS)
        self.t = 1000
        self.cache.apply(exec_event(1, 1, ROOT, "/sbin/init", cgroup="/init.scope", flags=wire.FLAG_PROCFS))

    def apply(self, op: tuple) -> None:
        kind, a, b, c = op
        self.t += 1000
        t = self.t
        live = sorted(self.cache.by_pid.values(), key=lambda p: p.pid)
        pick = (lambda i: live[i % len(live)]) if live else (lambda i: None)
        parent = pick(b).key if live else ROOT
        pid = 2 + a % 40  # few pids: reuse happens
        if kind == "exec":
            ns = namespaces(pid=99) if c % 4 else None
            self.cache.apply(exec_event(pid, t, parent, BINARIES[c % 3], (str(a),), cgroup=CGROUPS[c % 4], ns=ns))
        elif kind == "clone":
            self.cache.apply(clone_event(pid, t, parent))
        elif kind == "reexec" and live:
            p = pick(a)
            self.cache.apply(
                exec_event(p.pid, t, p.tree_parent, BINARIES[c % 3], cleanup=p.key, cgroup=p.cgroup or "/", uid=c)
            )
        elif kind == "exit" and live:
            self.cache.apply(exit_event(pick(a).key, t))
        elif kind == "lost":
            self.cache.apply(exit_event(K(500 + a % 20, t), t))  # never seen: a placeholder
        elif kind == "time":
            self.t += (a % 5) * S
            self.cache.expire(self.t)


KINDS = st.sampled_from(["exec", "exec", "clone", "reexec", "exit", "exit", "lost", "time"])
OPS = st.lists(st.tuples(KINDS, st.integers(0, 999), st.integers(0, 999), st.integers(0, 999)), max_size=60)


def views(cache) -> list[ViewOptions]:
    parents = sorted((p.key for p in cache.procs.values() if p.children), key=lambda k: (k.pid, k.ktime))
    folded = {*parents[:2], "host", "container:" + "3f2a" * 16}
    return [
        ViewOptions(tree=tree, sort=sort, reverse=reverse, group=group, collapsed=collapsed)
        for tree, sort, reverse in (
            (True, "PID", False),
            (False, "USER", False),
            (False, "START", True),
            (False, "COMMAND", False),
        )
        for group in GROUPS
        for collapsed in (set(), folded)
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS, st.integers(0, 1000))
def test_incremental_rows_equal_rows_from_scratch(ops, seed):
    m = Machine()
    model = TreeModel(m.cache)
    memo: dict = {}
    for i, op in enumerate(ops):
        m.apply(op)
        combos = [(q, v) for q in QUERIES for v in views(m.cache)]
        # One view per step, changing as the steps go (so the model's kept
        # order is used across views), and all of them at the end.
        for query, opts in combos if i == len(ops) - 1 else [combos[(seed + i) % len(combos)]]:
            match = query.predicate(m.cache) if query else None
            rows = model.rows(query, opts)
            assert model.rows(query, opts) is rows  # nothing changed: kept
            assert signature(rows) == signature(process_rows(m.cache, match, opts))
            if opts.group == "none":
                assert signature(rows) == reference_rows(m.cache, match, opts)
            for j in range(len(rows)):
                assert rows.keys.index(rows.keys[j]) == j
            # Kept row texts are the ones a fresh render gives.
            ctx, columns = Context(m.cache, m.t, 0), tuple(fit(list(DEFAULT), 200))
            lines = _Lines(rows, ctx, columns, {K(1, 1)} if i % 2 else set(), memo, SubtreeRates())
            for j, r in enumerate(rows):
                if not isinstance(r, Group):
                    fresh = row_text(r, ctx, columns)
                    if r.proc.key == K(1, 1) and i % 2:
                        assert lines[j].plain.startswith("*")
                    else:
                        assert rendered(lines[j]) == rendered(fresh)


def test_a_storms_parent_with_many_children_changed_at_once():
    """Hundreds of children of one parent come, exec and go between two
    frames (a storm's second): the kept children lists, merged in one sort,
    equal the rows from scratch, in the tree and in the flat list."""
    init, shell = K(1, 10), K(50, 20)
    cache = ProcessCache(host_ns=HOST_NS, grace_ns=3 * S)
    cache.apply_all([exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS),
                     exec_event(50, 20, init, "/bin/sh", flags=wire.FLAG_PROCFS)])  # fmt: skip
    model = TreeModel(cache)
    tree, flat = ViewOptions(), ViewOptions(tree=False)
    pids = [1000 + (i * 7919) % 4000 for i in range(600)]  # out of order, as a busy machine's pids come
    t = 100
    for step in range(4):
        batch = pids[step * 150 : (step + 1) * 150]
        for pid in batch:
            t += 10
            cache.apply(clone_event(pid, t, shell))
            cache.apply(exec_event(pid, t + 1, shell, "/bin/true", cleanup=K(pid, t)))
        for pid in batch[::3]:  # a third exits at once; the rest stay
            cache.apply(exit_event(cache.by_pid[pid].key, t + 2))
        cache.expire(t + step * 2 * S)  # the earlier steps' exits leave the tree
        for opts in (tree, flat):
            assert signature(model.rows(None, opts)) == signature(process_rows(cache, None, opts))


def test_a_model_not_drawn_forgets_what_changed_beyond_the_caches_size():
    """Another node's monitor is shown for long in a storm: the one hidden
    keeps at most about its cache's size of changed processes, and its next
    rows are those from scratch."""
    from procscope.tui import rows as rows_module

    init = K(1, 10)
    cache = ProcessCache(host_ns=HOST_NS, grace_ns=S)
    cache.apply(exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS))
    model = TreeModel(cache)
    model.rows(None, ViewOptions())
    limit = rows_module.TRIM_AFTER
    for i in range(limit + 100):  # each runs and is gone: the cache stays small, what changed does not
        pid = 100 + i % 30000
        cache.apply(exec_event(pid, 100 + 10 * i, init, "/bin/true"))
        cache.apply(exit_event(K(pid, 100 + 10 * i), 105 + 10 * i))
        cache.expire(106 + 10 * i + S)
        model.trim()
    assert len(model._changed) <= max(limit, len(cache.procs)) + 2 and len(cache.procs) < limit
    cache.apply(exec_event(7, 10**12, init, "/bin/last"))
    for opts in views(cache):
        assert signature(model.rows(None, opts)) == signature(process_rows(cache, None, opts))


def test_a_view_of_the_last_walk_until_a_fresh_call():
    """A key in a storm (fresh=False) shows the last frame's processes in
    the new view; what changed since comes with the next fresh call."""
    init = K(1, 10)
    cache = ProcessCache(host_ns=HOST_NS)
    cache.apply_all([exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS),
                     exec_event(30, 20, init, "/bin/a"), exec_event(20, 30, init, "/bin/b")])  # fmt: skip
    model = TreeModel(cache)
    model.rows(None, ViewOptions())
    cache.apply(exec_event(10, 40, init, "/bin/new"))
    stale = model.rows(None, ViewOptions(tree=False), fresh=False)
    assert [r.proc.pid for r in stale] == [1, 20, 30]  # sorted in the new view, without pid 10
    assert model.rows(None, ViewOptions(tree=False), fresh=False) is stale
    assert [r.proc.pid for r in model.rows(None, ViewOptions(tree=False))] == [1, 10, 20, 30]


def grouped_events() -> list:
    """init and sshd on the host; a container (runc-init, busybox httpd, a
    shell under it); below that shell, a process moved to a host cgroup."""
    init, runc, httpd, sh = K(1, 10), K(200, 30), K(201, 40), K(202, 50)
    ns = namespaces(pid=99, net=98)
    return [
        exec_event(1, 10, ROOT, "/sbin/init", cgroup="/init.scope", flags=wire.FLAG_PROCFS),
        exec_event(50, 20, init, "/usr/sbin/sshd", cgroup="/system.slice/ssh.service"),
        exec_event(200, 30, init, "/usr/bin/runc-init", cgroup=DOCKER, ns=ns),
        exec_event(201, 40, runc, "/bin/busybox", ("httpd",), cgroup=DOCKER, ns=ns),
        exec_event(202, 50, httpd, "/bin/sh", cgroup=DOCKER, ns=ns),
        exec_event(203, 60, sh, "/usr/bin/top", cgroup="/system.slice/ssh.service"),
    ]


def grouped_cache() -> ProcessCache:
    cache = ProcessCache(host_ns=HOST_NS)
    cache.apply_all(grouped_events())
    return cache


def layout(rows) -> list:
    return [r.key if isinstance(r, Group) else (r.proc.pid, r.depth) for r in rows]


def test_grouped_by_container_headers_then_their_trees():
    cache = grouped_cache()
    rows = process_rows(cache, None, ViewOptions(group="container"))
    cid = "3f2a" * 16
    # Host first; a process hangs under its nearest ancestor in its group (top under init).
    assert layout(rows) == ["host", (1, 1), (50, 2), (203, 2), f"container:{cid}", (200, 1), (201, 2), (202, 3)]
    host, box = rows[0], rows[4]
    assert (host.kind, host.live, box.kind, box.container.runtime, box.live) == ("host", 3, "container", "docker", 3)
    assert group_text(box, False).plain == f"▾ container {cid[:12]}  docker  runc-init  3 processes"
    assert group_text(host, True).plain.startswith("▸ host")

    # A folded header hides its group; a filter keeps the path down to what it found, in its group.
    rows = process_rows(cache, None, ViewOptions(group="container", collapsed={f"container:{cid}"}))
    assert layout(rows) == ["host", (1, 1), (50, 2), (203, 2), f"container:{cid}"]
    rows = process_rows(cache, Query.parse("bin:busybox").predicate(cache), ViewOptions(group="container"))
    assert layout(rows) == [f"container:{cid}", (200, 1), (201, 2)] and rows[0].shown == 2 and rows[0].live == 3
    # Flat: each group's processes sorted, under its header.
    rows = process_rows(cache, None, ViewOptions(tree=False, sort="COMMAND", group="container"))
    assert layout(rows) == ["host", (1, 1), (203, 1), (50, 1), f"container:{cid}", (201, 1), (202, 1), (200, 1)]


def test_grouped_by_cgroup():
    cache = grouped_cache()
    rows = process_rows(cache, None, ViewOptions(group="cgroup"))
    assert layout(rows) == [
        "cgroup:/init.scope", (1, 1),
        f"cgroup:{DOCKER}", (200, 1), (201, 2), (202, 3),
        "cgroup:/system.slice/ssh.service", (50, 1), (203, 1),
    ]  # fmt: skip
    assert group_text(rows[2], False).plain == f"▾ cgroup {DOCKER}  3 processes"
    # Header keys are strings, never process keys: the rows' keys find them.
    assert rows.keys.index(f"cgroup:{DOCKER}") == 2 and K(1, 10) in rows.keys and "host" not in rows.keys


class FeedSource(Source):
    """A source the test feeds events to, by hand."""

    label = "test"

    def __init__(self, events):
        super().__init__(ProcessCache(host_ns=HOST_NS))
        self.pending = list(events)

    def drain(self):
        out, self.pending = self.pending, []
        return out


async def test_cursor_stays_on_its_process_when_rows_come_above(tmp_path):
    init = K(1, 10)
    sleepers = [exec_event(pid, pid, init, "/bin/sleep", (str(pid),)) for pid in range(100, 160)]
    source = FeedSource([exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS), *sleepers])
    app = ProcscopeApp(source, snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        tree = app.query_one("#tree")
        for _ in range(30):
            await pilot.press("down")
        await pilot.pause()
        key, cursor, line = tree.selected_key, tree.cursor, tree.cursor - tree.scroll_offset.y
        assert key.pid == 129 and tree.scroll_offset.y > 0  # scrolled: the cursor is near the bottom
        source.pending = [exec_event(pid, 200 + pid, init, "/bin/true") for pid in range(50, 60)]  # sorted above
        await pilot.pause(0.3)
        assert pids(tree)[1:11] == list(range(50, 60))
        assert tree.selected_key == key and tree.cursor == cursor + 10
        assert tree.cursor - tree.scroll_offset.y == line  # at the same line on screen
        assert "129  key 129:129" in plain(app, app.query_one("#detail").content)


async def test_rows_repainted_one_by_one_show_what_a_full_repaint_shows(tmp_path):
    """Only changed lines are drawn again (an idle second draws none): the
    screen must still be what drawing everything would show."""
    init = K(1, 10)
    sleepers = [exec_event(pid, pid, init, "/bin/sleep", (str(pid),)) for pid in range(100, 160)]
    source = FeedSource([exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS), *sleepers])
    app = ProcscopeApp(source, snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down")
        await pilot.pause(0.3)
        for arrived in (
            [exit_event(K(110, 110), 10**12, 3)],  # one line changes
            [exec_event(99, 300, init, "/bin/arrived-above")],
        ):  # every line moves down
            before = screen_text(app)
            source.pending = arrived
            await pilot.pause(0.3)
            partly = screen_text(app)
            assert partly != before
            for view in app.screen.query(RowsView):
                view.refresh()
            await pilot.pause()
            assert screen_text(app) == partly
        assert "✗ /bin/sleep 110" in partly and "├─ /bin/arrived-above" in partly


async def test_g_cycles_grouping_and_headers_fold(tmp_path):
    app = ProcscopeApp(FeedSource(grouped_events()), snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        tree = app.query_one("#tree")
        assert pids(tree)[:2] == [1, 50] and not tree.shown.groups
        await pilot.press("g")
        await pilot.pause()
        assert app.monitor.view.group == "container"
        assert [k if isinstance(k, str) else k.pid for k in tree.keys] == [
            "host", 1, 50, 203, "container:" + "3f2a" * 16, 200, 201, 202]  # fmt: skip
        assert tree.selected_key.pid == 1  # the cursor stayed on init, now under its header
        assert tree.rows[0].plain.startswith("▾ host") and tree.rows[4].plain.startswith("▾ container 3f2a3f2a3f2a")
        await pilot.press("up")  # the header: the detail pane summarises the group
        await pilot.pause()
        assert tree.selected_key == "host" and "3 live" in plain(app, app.query_one("#detail").content)
        await pilot.press("minus")
        await pilot.pause()
        assert tree.keys[:2] == ["host", "container:" + "3f2a" * 16] and tree.rows[0].plain.startswith("▸ host")
        await pilot.press("plus")
        await pilot.pause()
        assert len(tree.keys) == 8
        await pilot.press("g")
        await pilot.pause()
        assert app.monitor.view.group == "cgroup" and tree.keys[0] == "cgroup:/init.scope"
        await pilot.press("g")
        await pilot.pause()
        assert app.monitor.view.group == "none" and pids(tree)[:2] == [1, 50]


@pytest.mark.bpf
async def test_live_source_first_drain_has_the_proc_scan(tmp_path):
    """The scan is taken by LiveSource.start(), after the probes are
    attached: the first frame shows the whole tree. Needs BPF."""
    collector = open_collector()
    source = LiveSource(collector, 5 * S)
    app = ProcscopeApp(source, snapshot_dir=str(tmp_path))
    drained: list = []
    drain = source.drain
    source.drain = lambda: drained.append(drain()) or drained[-1]
    async with app.run_test(size=SIZE):
        first = drained[0]
        scanned = {ev.key.pid for ev in first if isinstance(ev, ExecEvent) and ev.flags & wire.FLAG_PROCFS}
        assert {1, os.getpid()} <= scanned
        assert os.getpid() in pids(app.query_one("#tree"))  # in the first frame
        assert not collector.scan_proc  # the collector's thread did not scan again


def glyphs_from_scratch(depths: list[int]) -> list[str]:
    """What the tree draws before each command, from the definition: └─ for
    the last of its siblings (no later row at its depth before its parent's
    subtree ends), ├─ else; under each ancestor below the top, │ if that
    ancestor has siblings still to come."""
    n = len(depths)

    def is_last(i: int) -> bool:
        for j in range(i + 1, n):
            if depths[j] < depths[i]:
                return True
            if depths[j] == depths[i]:
                return False
        return True

    out = []
    for i, d in enumerate(depths):
        if d == 0:
            out.append("")
            continue
        ancestors = {}
        for j in range(i - 1, -1, -1):
            if depths[j] < d and depths[j] not in ancestors and all(depths[j] < depths[k] for k in range(j + 1, i)):
                ancestors[depths[j]] = j
        guide = "".join("   " if is_last(ancestors[k]) else "│  " for k in range(1, d))
        out.append(guide + ("└─ " if is_last(i) else "├─ "))
    return out


@given(st.lists(st.integers(0, 4), max_size=40))
def test_tree_glyphs_are_htops(steps):
    depths = []
    for s in steps:  # each row at most one deeper than the one before
        depths.append(min(s, depths[-1] + 1) if depths else 0)
    rows = Rows(list(range(len(depths))), depths, frozenset(), None, {})
    guides = rows.guides()
    drawn = [(guides.guide(i) + ("└─ " if guides.last[i] else "├─ ")) if d else "" for i, d in enumerate(depths)]
    assert drawn == glyphs_from_scratch(depths)


def test_a_chain_deeper_than_any_screen_costs_what_a_screen_shows():
    """A process can nest its children as deep as it likes: the tree lines
    of its deepest row are what a screen can show (their left part, as
    drawn), not a string per level."""
    depths = list(range(20_000))
    guides = Rows(depths, depths, frozenset(), None, {}).guides()
    deepest = guides.guide(len(depths) - 1)
    assert deepest == "   " * (MAX_GUIDE // 3)
    assert guides.guide(5) == "   " * 4


def test_tree_glyphs_on_screen():
    """init; two children, the first with two of its own; the last folded (htop's +)."""
    cache = ProcessCache(host_ns=HOST_NS)
    cache.apply(exec_event(1, 1, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS))
    for pid, parent in ((2, 1), (3, 2), (4, 2), (5, 1), (6, 5)):
        cache.apply(exec_event(pid, pid, cache.by_pid[parent].key, f"/bin/p{pid}", flags=wire.FLAG_PROCFS))
    rows = process_rows(cache, None, ViewOptions(collapsed={cache.by_pid[5].key}))
    assert [rows[i].branch + rows[i].proc.binary for i in range(len(rows))] == [
        "/sbin/init", "├─ /bin/p2", "│  ├─ /bin/p3", "│  └─ /bin/p4", "└+ /bin/p5"]  # fmt: skip


def test_the_exec_stream_keeps_the_parent_at_the_exec_and_shows_argv0():
    """A pipeline's child whose shell has exited: the stream says who
    started it (Tetragon's parent), not the reaper it has since; a busybox
    applet shows its argv[0] after the binary (issue 28, points 2 and 12)."""
    from procscope.tui.panes.exec_stream import exec_row

    cache = ProcessCache()
    init = exec_event(1, 10, ROOT, "/sbin/init")
    sh = exec_event(100, 20, init.key, "/bin/sh")
    child = exec_event(101, 30, sh.key, "/bin/busybox", ("600",), argv0="sleep")
    cache.apply_all([init, sh, child, exit_event(sh.key, 40)])
    proc = cache.procs[child.key]
    assert proc.tree_parent.pid == 1  # re-parented, as the kernel does: the list's PPID
    row = exec_row("10:00:00.000", proc).plain
    assert row.split()[1:3] == ["101", "100"] and row.rstrip().endswith("/bin/busybox│sleep 600")


def test_a_frames_rows_go_without_garbage_collection():
    """Rows replaced by the next frame's are freed at once, with the exited
    processes only they hold: kept in a reference cycle, a storm's second
    of them waited for a garbage collection, which then walked them all
    (0.1 s on the UI thread with 25,000)."""
    init = K(1, 10)
    cache = ProcessCache(host_ns=HOST_NS, grace_ns=S)
    cache.apply(exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS))
    model = TreeModel(cache)
    gc.collect()
    gc.disable()
    try:
        for i, opts in enumerate((ViewOptions(), ViewOptions(tree=False), ViewOptions(group="container"))):
            cache.apply(exec_event(100 + i, 20 + i, init, "/bin/true"))
            rows = model.rows(None, opts)
            rows.guides()
            gone = weakref.ref(rows)
            del rows
            cache.apply(exec_event(200 + i, 30 + i, init, "/bin/true"))
            model.rows(None, opts)  # the next frame's
            assert gone() is None, opts
    finally:
        gc.enable()
