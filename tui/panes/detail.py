"""Everything about the selected process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Sparkline, Static

from procscope import describe
from procscope.accounts import group_name, user_name
from procscope.cache import ProcessCache
from procscope.export import Exporter
from procscope.probes import wire
from procscope.probes.events import NAMESPACES
from procscope.probes.names import ALL_CAPS, cap_names, securebit_names
from procscope.probes.text import printable, scripts
from procscope.probes.wire import UNKNOWN_ID
from procscope.process import Process
from procscope.sampler import Usage

from ..frame import Selection
from ..safe_text import add_row
from .container import container_rows
from .process_tree import render_group

LABEL_WIDTH = len("ns ") + max(map(len, NAMESPACES))  # "ns time_for_children"


def _id(n: int, name: str) -> str:
    return "unset" if n == UNKNOWN_ID else f"{n} ({name})" if name != str(n) else str(n)


def local_time(wall_ns: int) -> str:
    """Local time with its zone, to the millisecond."""
    t = time.localtime(wall_ns / 1e9)
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{wall_ns // 1_000_000 % 1000:03d} " + time.strftime("%Z", t)


def lookalike(name: str) -> str:
    """What makes a name a possible look-alike of another: letters of several
    scripts (Cyrillic 'ѕ' in "sshd"), or characters shown escaped (invisible ones)."""
    found = scripts(name)
    if len(found) > 1:
        return "⚠ its name mixes scripts: " + ", ".join(s.title() for s in found) + " (a look-alike?)"
    if not name.isascii() and printable(name) != name:
        return "⚠ its name holds invisible or ambiguous characters, shown escaped (a look-alike?)"
    return ""


def usage_rows(t: Table, proc: Process, cache: ProcessCache, u: Usage | None) -> None:
    """What it uses, as the sampler last read it (``u``: a running process's)."""
    own, children = describe.cpu_ns(proc, cache, u), describe.children_cpu_ns(proc, cache, u)
    if own is not None or children is not None:
        times = [f"{describe.cpu_time_text(own)} own"] if own is not None else []
        if children is not None:
            whose = "exited descendants'" if describe.all_exits_seen(proc, cache) else "exited children's (waited for)"
            times.append(f"{describe.cpu_time_text(children)} its {whose}")
        total = f" = {describe.cpu_time_text((own or 0) + (children or 0))}" if len(times) > 1 else ""
        pct = f"{describe.percent_text(u.cpu_pct)}% of one CPU;  " if u is not None else ""
        add_row(t, "CPU", f"{pct}time {' + '.join(times)}{total}")
    if u is None:
        return
    machine = cache.usage.machine
    mem = partial(describe.memory_text, unit=True)
    share = f" ({100 * u.rss / machine.mem_total:.1f}% of {mem(machine.mem_total)})" if machine else ""
    shared = f"  SHR {mem(u.shared)}" if u.shared is not None else ""
    add_row(t, "memory", f"RES {mem(u.rss)}{share}  VIRT {mem(u.virt)}{shared}")
    add_row(t, "threads", f"{u.threads}" + (f";  nice {u.nice}" if u.nice is not None else ""))
    if u.io_read is not None and u.io_write is not None:
        add_row(t, "disk", f"read {describe.rate_text(u.io_read)}B/s  written {describe.rate_text(u.io_write)}B/s")


def grid() -> Table:
    """Label and value; the labels as wide as the widest, so that the head and the body line up."""
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True, min_width=LABEL_WIDTH)
    t.add_column()
    return t


def render_detail(proc: Process | None, cache: ProcessCache, now: int, exporter: Exporter) -> Group | Text:
    if proc is None:
        return Text("no process selected", style="dim")
    return Group(render_head(proc, cache, now, exporter), render_body(proc, cache, exporter))


def render_head(proc: Process, cache: ProcessCache, now: int, exporter: Exporter) -> Table:
    """What changes by the second: the age, what it uses."""
    t = grid()
    add_row(t, "pid", f"{proc.pid}  key {proc.key.pid}:{proc.key.ktime}")
    u = describe.usage(proc, cache)
    # A running process's state as the kernel has it (the S column's), not only that it is alive.
    state = f"{u.state} ({describe.STATES.get(u.state, '?')})" if u is not None else describe.state_text(proc)
    add_row(t, "state", state + f"  (age {describe.age_text(describe.age_ns(proc, now))})")
    add_row(t, "started", local_time(proc.key.ktime + exporter.wall_offset))
    if not proc.alive and proc.exit_time:
        add_row(t, "ended", local_time(proc.exit_time + exporter.wall_offset))
    usage_rows(t, proc, cache, u)
    return t


def render_body(proc: Process, cache: ProcessCache, exporter: Exporter) -> Table:
    """The rest (its image, credentials, namespaces, container, ancestry), which seldom changes."""
    t = grid()
    img = proc.image
    if img is None:
        add_row(t, "", Text("process not found: its exec or clone was lost", style="bold red"))
        return t
    # Unknown (pid 1 in this VM: its /proc/1/exe cannot be read): said, not an empty path and inode 0.
    add_row(t, "binary", f"{img.binary}  (inode {img.ino}, links {img.nlink})" if img.binary else "? (unknown)")
    if proc.argv0:
        add_row(t, "argv[0]", proc.argv0)
    if warning := lookalike(img.binary.rsplit("/", 1)[-1]):
        add_row(t, "", Text(warning, style="bold yellow"))
    add_row(t, "args", " ".join(img.args))
    add_row(t, "cwd", img.cwd)
    add_row(t, "flags", " ".join(img.flag_words))
    add_row(t, "badges", " ".join(describe.badges(proc, cache)) or "-")
    for change in proc.changes or ():  # after the exec, oldest first: what is shown below is the newest
        style = "bold red" if change.rose else ""
        add_row(t, "changed", Text(f"{local_time(change.time + exporter.wall_offset)}  "
                                   f"{describe.change_text(change, cache.host_ns)}", style=style))  # fmt: skip
    _credential_rows(t, proc, cache)
    for name in NAMESPACES:
        inum = getattr(img.ns, name)
        host = cache.host_ns.get(name)
        where = "host" if inum == host else "?" if not inum or not host else "NOT HOST"
        add_row(t, f"ns {name}", Text(f"{inum}  {where}", style="bold yellow" if where == "NOT HOST" else ""))
    add_row(t, "cgroup", proc.cgroup or "-")
    if proc.container is not None:
        container_rows(t, proc.container, cache.cgroup_index.info_of(proc.container))
        entered = "from its first process" if img.flags & wire.FLAG_IN_INIT_TREE else "from outside (exec-in)"
        add_row(t, "in the container", entered)
    else:
        add_row(t, "container", "-")
    earlier = cache.exec_chain(proc)[:-1]
    if earlier:
        add_row(t, "exec'd from", " → ".join(f"{p.binary or '?'}" for p in earlier))
    chain = [f"{a.pid} {a.binary or '?'}" for a in reversed(cache.ancestry(proc))]
    add_row(t, "ancestry", " → ".join(chain + [f"{proc.pid} {img.binary}"]))
    return t


def _credential_rows(t: Table, proc: Process, cache: ProcessCache) -> None:
    """Its user, ids, securebits and capabilities (those gained from its parent in red); from a
    source that did not send them (Tetragon without --enable-process-cred), its uid only."""
    img = proc.image
    assert img is not None
    c = img.creds
    group = f" / {group_name(c.egid)}" if c.known else ""
    add_row(t, "user", f"{describe.user(proc)}{group}  (login user {_id(img.auid, user_name(img.auid))})")
    if not c.known:
        add_row(t, "credentials", Text("not sent by its source (Tetragon sends them with --enable-process-cred)",
                                       style="dim"))  # fmt: skip
        return
    add_row(
        t,
        "uids",
        "  ".join(
            f"{k} {_id(v, user_name(v))}"
            for k, v in (("real", c.uid), ("effective", c.euid), ("saved", c.suid), ("fs", c.fsuid))
        ),
    )
    add_row(
        t,
        "gids",
        "  ".join(
            f"{k} {_id(v, group_name(v))}"
            for k, v in (("real", c.gid), ("effective", c.egid), ("saved", c.sgid), ("fs", c.fsgid))
        ),
    )
    add_row(t, "securebits", " ".join(securebit_names(c.securebits)) or "-")
    parent = cache.parent_of(proc)
    pcaps = parent.image.creds.caps if parent is not None and parent.image is not None else None
    for name in ("permitted", "effective", "inheritable"):
        mine = getattr(c.caps, name)
        theirs = getattr(pcaps, name) if pcaps is not None else mine
        # Root's usual sets as a count, not 41 names; those gained from the parent stay listed, in red.
        missing = ALL_CAPS & ~mine
        if mine and not mine & ~theirs and missing.bit_count() <= 4:
            summary = "all " + str(ALL_CAPS.bit_count()) if not missing else "all but " + " ".join(
                n.removeprefix("CAP_") for n in cap_names(missing))  # fmt: skip
            add_row(t, f"cap {name}", summary)
            continue
        text = Text()
        for cap in cap_names(mine):
            gained = cap not in cap_names(theirs)
            text.append(cap.removeprefix("CAP_") + " ", style="bold red" if gained else "")  # names of our own
        add_row(t, f"cap {name}", text if mine else Text("-", style="dim"))
    if pcaps is not None and any(getattr(c.caps, n) & ~getattr(pcaps, n) for n in ("permitted", "effective")):
        add_row(t, "", Text("in red: capabilities its parent lacked", style="dim"))
    if proc.cap_sets is not None:  # known once a change after the exec told them
        add_row(t, "cap ambient", " ".join(n.removeprefix("CAP_") for n in cap_names(proc.cap_sets.ambient)) or "-")
        dropped = ALL_CAPS & ~proc.cap_sets.bounding
        add_row(t, "cap bounding", "all but " + " ".join(n.removeprefix("CAP_") for n in cap_names(dropped))
                if dropped else "all")  # fmt: skip


class Detail(VerticalScroll):
    """Everything about the monitor's selection, scrolled when it is taller
    than the pane (a Static alone would be cut off)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown: tuple | None = None  # what it was drawn from
        self._drawn: tuple[RenderableType, Table | None] = ("", None)  # head and body
        self._body: tuple | None = None  # the cells the body shows (cells())

    def on_mount(self) -> None:
        self.watch(self.screen, "selection", self.show)

    def show(self, sel: Selection | None) -> None:
        if sel is None or not sel.open:
            return
        proc, group, cache, now = sel.proc, sel.group, sel.cache, sel.now
        # Drawn again only when it may show something else (ages are in seconds); laid out
        # (which redraws the whole screen) only when what it shows is another thing, as
        # only then may its height change; the next second's age of the same is a repaint.
        usage = describe.usage(proc, cache) if proc else None
        what = (proc, proc and (proc.image, proc.alive, proc.in_grace, proc.container, proc.cgroup, usage is None),
                group and (group.key, group.live, group.shown))  # fmt: skip
        # Ages are shown in seconds, after an hour in minutes: the text, not the clock, says when.
        shown = (what, describe.age_text(describe.age_ns(proc, now)) if proc else now // 10**9, usage)
        if shown == self._shown:
            return
        layout = self._shown is None or self._shown[0] != what
        self._shown = shown
        if proc is None:  # a group's header row, or nothing
            self.update(render_group(group, cache, now) if group else render_detail(None, cache, now, sel.exporter),
                        None, layout)  # fmt: skip
        else:
            self.update(render_head(proc, cache, now, sel.exporter), render_body(proc, cache, sel.exporter), layout)
        followed = describe.usage_key(proc, cache) if proc else None
        self.show_history(cache.usage.history.get(followed, ()) if followed else ())

    def compose(self):
        # Its last minutes (a running process on screen or busy since): the sampler's passes.
        with Horizontal(id="detail-history"):
            yield Static("CPU%", classes="history-label", markup=False)
            yield Sparkline([], id="cpu-history")
            yield Static("RES", classes="history-label", markup=False)
            yield Sparkline([], id="rss-history")
        yield Static(id="detail-head")
        yield Static(id="detail-body")

    def show_history(self, points: Sequence[tuple[float, int]]) -> None:
        """(CPU%, RES) per pass, oldest first; none: hidden."""
        # The sampler's thread appends to its deque meanwhile: copied in one step (C, under the
        # GIL), not iterated in Python steps (a crash seen in a storm: "deque mutated").
        points = tuple(points)
        try:
            box = self.query_one("#detail-history")
        except NoMatches:
            return
        box.display = len(points) > 1
        if box.display:
            self.query_one("#cpu-history", Sparkline).data = [c for c, _ in points]
            self.query_one("#rss-history", Sparkline).data = [float(r) for _, r in points]

    @property
    def content(self) -> Group:
        """What it shows: the head, and the body under it when there is one."""
        head, body = self._drawn
        return Group(head, *([body] if body is not None else []))

    def update(self, head: RenderableType, body: Table | None, layout: bool = True) -> None:
        """``body`` None: none (a group's detail)."""
        try:
            head_static, body_static = self.query_one("#detail-head", Static), self.query_one("#detail-body", Static)
        except NoMatches:  # already removed: the app is closing under a tick of its timer
            return
        self._drawn = head, body
        head_static.update(head, layout=layout)
        # The body is drawn again only when what it shows changed, not at each second's new age:
        # Rich lays its table out in ~8 ms (measured in a storm: 15% of the monitor's repaint CPU).
        shows = cells(body) if body is not None else None
        if shows != self._body:
            self._body = shows
            body_static.display = body is not None
            body_static.update(body or "", layout=True)


def cells(table: Table) -> tuple:
    """What a table shows, to compare: each cell's text and styles."""
    return tuple((c.plain, c.style, tuple(c.spans)) if isinstance(c, Text) else c
                 for column in table.columns for c in column.cells)  # fmt: skip
