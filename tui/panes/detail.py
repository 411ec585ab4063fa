"""Everything about the selected process."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from procscope import derive
from procscope.accounts import group_name
from procscope.cache import ProcessCache
from procscope.probes.events import NAMESPACES
from procscope.probes.words import cap_names, securebit_names
from procscope.process import Process

from ..rows import age_text
from ..text import add_row


def render_detail(proc: Process | None, cache: ProcessCache, now: int) -> Table | Text:
    if proc is None:
        return Text("no process selected", style="dim")
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    img = proc.image
    add_row(t, "pid", f"{proc.pid}  key {proc.key.pid}:{proc.key.ktime}")
    add_row(t, "state", derive.state_text(proc) + f"  (age {age_text(derive.age_ns(proc, now))})")
    if img is None:
        add_row(t, "", Text("process not found: its exec or clone was lost", style="bold red"))
        return t
    add_row(t, "binary", f"{img.binary}  (inode {img.ino}, links {img.nlink})")
    add_row(t, "args", " ".join(img.args))
    add_row(t, "cwd", img.cwd)
    add_row(t, "flags", " ".join(img.flag_words))
    add_row(t, "badges", " ".join(derive.badges(proc, cache)) or "-")
    c = img.creds
    ids = (f"uid {c.uid} euid {c.euid} suid {c.suid} fsuid {c.fsuid}  "
           f"gid {c.gid} egid {c.egid} sgid {c.sgid} fsgid {c.fsgid}")  # fmt: skip
    add_row(t, "user", f"{derive.user(proc)} / {group_name(c.egid)}  auid {img.auid}")
    add_row(t, "ids", ids)
    add_row(t, "securebits", " ".join(securebit_names(c.securebits)) or "-")
    parent = cache.parent_of(proc)
    pcaps = parent.image.creds.caps if parent is not None and parent.image is not None else None
    for name in ("permitted", "effective", "inheritable"):
        mine = getattr(c.caps, name)
        theirs = getattr(pcaps, name) if pcaps is not None else mine
        text = Text()
        for cap in cap_names(mine):
            gained = cap not in cap_names(theirs)
            text.append(cap.removeprefix("CAP_") + " ", style="bold red" if gained else "")  # names of our own
        add_row(t, f"cap {name}", text if mine else Text("-", style="dim"))
    for name in NAMESPACES:
        inum = getattr(img.ns, name)
        host = cache.host_ns.get(name)
        where = "host" if inum == host else "?" if not inum or not host else "NOT HOST"
        add_row(t, f"ns {name}", Text(f"{inum}  {where}", style="bold yellow" if where == "NOT HOST" else ""))
    add_row(t, "cgroup", proc.cgroup or "-")
    add_row(t, "container", f"{proc.container.id} ({proc.container.runtime})" if proc.container else "-")
    earlier = cache.exec_chain(proc)[:-1]
    if earlier:
        add_row(t, "exec'd from", " → ".join(f"{p.binary or '?'}" for p in earlier))
    chain = [f"{a.pid} {a.binary or '?'}" for a in reversed(cache.ancestry(proc))]
    add_row(t, "ancestry", " → ".join(chain + [f"{proc.pid} {img.binary}"]))
    return t


class Detail(VerticalScroll):
    """Shows what the app renders for the selection, scrolled when it is
    taller than the pane (a Static alone would be cut off)."""

    def compose(self):
        yield Static(id="detail-body")

    @property
    def content(self):
        return self.query_one("#detail-body", Static).content

    def update(self, renderable) -> None:
        self.query_one("#detail-body", Static).update(renderable)
