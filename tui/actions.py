"""What the monitor's keys do (the bindings are the app's): htop's keys for
htop's actions, procscope's own on keys htop leaves free. A mixin of the
monitor's screen (tui.monitor): every action changes the view or acts on
processes, then redraws."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from functools import partial

from textual.notifications import SeverityLevel

from procscope import describe, snapshot, themes
from procscope.probes.events import ProcessKey
from procscope.process import Process
from procscope.query import Query, Term
from procscope.safe_write import OutputError, free_name
from procscope.signals import SIGNALS, renice
from procscope.signals import send as send_signal
from procscope.timetravel import Timeline

from . import config
from .columns import empty_columns
from .rows import GROUPS, TreeModel
from .screens.help import HelpScreen
from .screens.pick import PickScreen
from .screens.setup import Setup, SetupScreen
from .screens.signal import SignalScreen
from .sources import ReplaySource
from .state import MonitorState
from .travel import Shown, TimeTravel

SIGNALS_OFF = "signals and renice are off in this served monitor (start procscope serve with --allow-signals)"

PANELS = ("execs", "exits", "history", "drops")  # the bottom panel's contents, in Tab's order


class Actions(MonitorState):
    # -- find and narrow -----------------------------------------------------------
    def action_prompt(self, mode: str) -> None:
        self.prompt_mode = mode
        box = self.prompt
        if mode == "time" and self.time_travel() is None:
            return
        box.placeholder = {"search": "search binary, args or pid (n, N: next, previous)",
                           "time": "go to: 2026-12-01T10:00:00Z, -30s from the end (live: from now), +10s from the start, or end"}.get(
            mode, "filter, e.g. container:web-1 image:nginx user:root cap:SYS_ADMIN ns:net bin:curl")  # fmt: skip
        box.value = str(self.filter_query) if mode == "filter" else ""
        box.add_class("shown")
        box.focus()

    # -- time travel ----------------------------------------------------------------
    def time_travel(self) -> TimeTravel | None:
        """Where the screen is in time: in a recording, or in the live monitor's
        window of recent events (read again at each step: it keeps moving)."""
        if isinstance(self.source, ReplaySource):
            if self.travel is None:
                self.travel = TimeTravel(
                    Timeline.of_replay(self.source.replay, self.cache.grace_ns, self.source.recorded)
                )
            return self.travel
        window = self.feed.window
        timeline = window.timeline(self.feed.now(), self.exporter.wall_offset) if window is not None else None
        if timeline is None:
            why = (window.failed or "it holds nothing yet") if window is not None and window.enabled else "--window 0"
            self.say(f"no time travel: {why} (it looks back --window, default 10m, or through a recording: "
                     "procscope --replay FILE)", severity="warning")  # fmt: skip
            return None
        if self.travel is None:
            self.travel = TimeTravel(timeline, live=True)
        else:
            self.travel.refresh(timeline)
        if self.travel.at is None and self.frozen and self.frozen_at is not None:
            self.travel.at = self.travel.clamp(self.frozen_at)  # from the moment frozen (Z)
        return self.travel

    def action_step_time(self, seconds: float) -> None:
        if (travel := self.time_travel()) is not None:
            self.show_moment(travel.step_seconds(seconds))

    def action_step_event(self, n: int) -> None:
        if (travel := self.time_travel()) is not None:
            self.show_moment(travel.step_events(n, self.filter_query))

    def show_moment(self, at: int | None) -> None:
        """The whole screen as of ``at`` (None: the end of the recording, or live again)."""
        travel = self.travel
        if travel is None:
            return
        if at is None and travel.live:
            self.back_to_live()
            return
        cache, execs, exits, seen = travel.go(at)
        if travel.at is None and travel.live:
            self.back_to_live()
            return
        self.shown = Shown(execs, exits, seen)
        self._show_cache(cache)

    def back_to_live(self) -> None:
        self.travel = None
        self.frozen = False
        self.shown = self.feed
        self._show_cache(self.feed.cache)

    def _show_cache(self, cache) -> None:
        self.cache = self.exporter.cache = cache
        self.tree_model.close()  # its tree model is rebuilt on the way back to live
        self.tree_model = TreeModel(cache)
        self.redraw(force=True)

    def search(self, text: str, step: int = 1) -> None:
        """Select the next (step 1) or previous (-1) process whose program's name holds ``text`` (or
        whose pid it is); failing that, whose binary path or arguments hold it."""
        tree = self.tree_pane
        self.last_search = text
        n = len(tree.keys)
        if not text or not n:
            return
        # The program's name first, as htop's search: `/yes` finds yes before an argument holding "yes".
        for found in (lambda p: text in os.path.basename(p.binary) or text == str(p.pid),
                      lambda p: text in " ".join((p.binary, *p.args))):  # fmt: skip
            for k in range(1, n + 1):
                i = (tree.cursor + step * k) % n
                proc = self.cache.get(tree.keys[i])
                if proc is not None and found(proc):
                    tree.cursor = i
                    return
        self.say(f"no process matches {text!r}", severity="warning")

    def action_search_next(self, step: int) -> None:
        if self.last_search:
            self.search(self.last_search, step)
        else:
            self.action_prompt("search")

    def _replace_terms(self, field: str, value: str | None) -> None:
        """The filter's terms on ``field`` replaced by this one ("" for none), the rest kept."""
        if value is None:
            return
        terms = tuple(t for t in self.filter_query.terms if t.field != field)
        self.filter_query = Query(terms + ((Term(field, value),) if value else ()))
        self.redraw()

    def action_pick_container(self) -> None:
        index, uses = self.cache.cgroup_index, self.cache.usage.containers
        entries = sorted(self.cache.containers.values(), key=lambda e: e.container.id)
        throttled = index.throttled_containers()
        names = Counter(info.name for e in entries if (info := index.info_of(e.container)) and info.name)
        choices = []
        for e in entries:
            info = index.info_of(e.container)
            # Chosen by its name when no other has it (the filter then reads as the user knows it), else its id.
            key = info.name if info is not None and info.name and names[info.name] == 1 else e.container.id
            used = describe.container_usage_text(uses.get(e.container.id))
            # Its name first (what is looked for down the list), then what it uses, then the rest of it.
            name = info.name if info is not None and info.name else e.container.short_id
            about = describe.container_text(e.container, info).removeprefix(name).lstrip()
            choices.append((key, f"{name}  " + (f"{used} │ " if used else "") + about + f"  {e.processes} processes"
                            + ("  ⏸ throttled" if e.container.id in throttled else "")))  # fmt: skip
        current = next((t.value for t in self.filter_query.terms if t.field == "container" and not t.negate), "")
        self.app.push_screen(PickScreen("Show one container", choices, current, "all containers"),
                         partial(self._replace_terms, "container"))  # fmt: skip

    def action_pick_node(self, current: str | None = None) -> None:
        """``current``: the choice shown now ("": all nodes' list), else this monitor's node."""
        if len(self.nodes) == 1:
            self.say("one node: --connect ADDR given more than once watches several", timeout=5)
            return
        choices = []
        for i, source in enumerate(self.nodes):
            c = source.counters()
            lost = f", {c.lost:,} lost" if c.lost else ""
            choices.append((str(i), f"{source.name:<24} {source.state()}  {len(source.cache.by_pid)} processes{lost}"))
        # Each node's monitor is a mode of the app (tui.app), and the list of all (tui.fleet).
        shown = str(self.nodes.index(self.source)) if current is None else current

        def show(picked: str | None) -> None:
            if picked is not None:
                self.app.switch_mode(f"node {picked}" if picked else "all nodes")

        self.app.push_screen(PickScreen("Show one node, or all", choices, shown, "all nodes, in one list"), show)

    def action_pick_user(self) -> None:
        users = Counter(describe.user(p) for p in self.cache.live())
        choices = [(name, f"{name:<20} {n:>6} processes") for name, n in sorted(users.items())]
        current = next((t.value for t in self.filter_query.terms if t.field == "user" and not t.negate), "")
        self.app.push_screen(PickScreen("Show one user's processes", choices, current, "all users"),
                         partial(self._replace_terms, "user"))  # fmt: skip

    # -- view ------------------------------------------------------------------------------
    def action_toggle_tree(self) -> None:
        self.view.tree = not self.view.tree
        self.redraw()

    def _sort_by(self, name: str | None) -> None:
        if not name:
            return
        self.view.sort, self.view.tree = name, False  # sorted means a list, as htop
        self.redraw()  # the column's title is marked ▲ or ▼: no notification over the list
        self.tree_pane.cursor = 0  # the first of the new order: what the key was pressed to find

    def action_sort_by(self, name: str) -> None:
        """P, M, T: htop's sorts, the most first (I inverts)."""
        self.view.reverse = True
        self._sort_by(name)

    def action_pick_sort(self) -> None:
        choices = [(c.name, (c.name, c.about)) for c in self.shown_columns]
        self.app.push_screen(PickScreen("Sort by", choices, self.view.sort), self._sort_by)

    def action_step_sort(self, step: int) -> None:
        names = [c.name for c in self.shown_columns]
        i = names.index(self.view.sort) if self.view.sort in names else 0
        self._sort_by(names[(i + step) % len(names)])

    def action_invert_sort(self) -> None:
        self.view.reverse = not self.view.reverse
        self._sort_by(self.view.sort)

    def action_cycle_group(self) -> None:
        self.view.group = GROUPS[(GROUPS.index(self.view.group) + 1) % len(GROUPS)]
        self.say("not grouped" if self.view.group == "none" else f"grouped by {self.view.group}")
        self.redraw()

    def action_expand(self) -> None:
        self.view.collapsed.discard(self.tree_pane.selected_key)
        self.redraw()

    def action_collapse(self) -> None:
        key = self.tree_pane.selected_key
        if key is not None:
            self.view.collapsed.add(key)
        self.redraw()

    def action_expand_all(self) -> None:
        self.view.collapsed.clear()
        self.redraw()

    def action_freeze(self) -> None:
        """Z: the view stands still; events still arrive and are applied behind it,
        and , . { } @ step back from the moment frozen. Z again: live (from time travel too)."""
        if self.travel is not None and self.travel.live:
            self.back_to_live()
            return
        self.frozen = not self.frozen
        self.frozen_at = self.now() if self.frozen else None
        self.redraw(force=True)

    def action_follow(self) -> None:
        """F: keep the selected process selected and in view wherever it moves."""
        key = self.tree_pane.selected_key
        self.following = key if self.following is None and isinstance(key, ProcessKey) else None
        self.redraw()

    def action_setup(self) -> None:
        shown, empty = {c.name for c in self.shown_columns}, empty_columns(self.cache, self.badged)
        hidden = {n: "nothing to show" if n in empty else "too narrow" for n in self.chosen_columns if n not in shown}
        self.app.push_screen(SetupScreen(self.chosen_columns, self.settings.header, hidden), self._setup_chosen)

    def _setup_chosen(self, setup: Setup | None) -> None:
        if setup is None:
            return
        self.chosen_columns = self.settings.columns = setup.columns
        self.settings.header = setup.header
        self.save_settings("columns")
        self.show_gauges()
        self.fit_columns()
        self.redraw()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.source.facts))

    async def action_quit(self) -> None:
        await self.app.action_quit()  # every node's monitor ends with it (ProcscopeApp.action_quit)

    def action_cycle_theme(self) -> None:
        self.app.theme = themes.next_name(self.app.theme)
        self.say(f"theme {self.app.theme}")

    # -- panels ------------------------------------------------------------------------------
    def action_toggle_detail(self) -> None:
        self.detail_open = not self.layout_now()[0]
        self.apply_layout()

    def action_panel(self, name: str) -> None:
        if self.layout_now()[1] and self.panel.current == name:
            self.panel_open = False  # the key again closes it
        else:
            self.panel.current, self.panel_open = name, True
        self.apply_layout()
        self.redraw(force=True)  # what the panel shows is drawn only while it is open

    def action_scroll_detail(self, rows: int) -> None:
        """The detail scrolls from the list, which keeps the keys: at 80x24 it shows a few rows of many."""
        if not self.layout_now()[0]:
            self.action_toggle_detail()
        self.detail.scroll_relative(y=rows, animate=False)

    def action_next_panel(self, step: int) -> None:
        if not self.layout_now()[1]:
            self.action_panel(self.panel.current or PANELS[0])
            return
        i = PANELS.index(self.panel.current) if self.panel.current in PANELS else 0
        self.action_panel(PANELS[(i + step) % len(PANELS)])

    def action_close_panels(self) -> None:
        box = self.prompt
        if box.has_class("shown"):
            box.remove_class("shown")
            self.tree_pane.focus()
            return
        detail, panel = self.layout_now()
        if panel:
            self.panel_open = False
        elif detail and not self.wide:
            self.detail_open = False
        self.apply_layout()

    # -- act on processes ------------------------------------------------------------------
    def action_tag(self) -> None:
        key = self.tree_pane.selected_key
        if not isinstance(key, ProcessKey) or self.cache.get(key) is None:
            return  # a group's header row, or evicted
        self.tagged ^= {key}
        self.redraw()
        self.tree_pane.action_move(1)

    def action_tag_children(self) -> None:
        """c: tag the process and everything below it, as htop does."""
        proc = self.cache.get(self.tree_pane.selected_key) if self.tree_pane.selected_key is not None else None
        if proc is not None:
            self.tagged |= {p.key for p in self.cache.subtree(proc)}
            self.redraw()

    def action_untag_all(self) -> None:
        self.tagged.clear()
        self.redraw()

    def acted_on(self, what: str) -> list[Process]:
        """The processes a signal or a renice goes to: the tagged, or else the
        selected one ([] said why: none, a replay, or not allowed)."""
        if not self.allow_signals:
            self.say(SIGNALS_OFF, severity="warning")
            return []
        if not self.source.live:
            self.say(f"{what} need a live source", severity="warning")
            return []
        selected = self.tree_pane.selected_key
        keys = self.tagged or ({selected} if isinstance(selected, ProcessKey) else set())
        targets = sorted((p for k in keys if (p := self.cache.get(k))), key=lambda p: p.pid)
        if not targets:
            self.say("no process selected", severity="warning")
        return targets

    def action_renice(self, change: int) -> None:
        """F7/F8: nice the tagged processes, or else the selected one, by one (htop's, no dialog)."""
        for proc in self.acted_on("priorities"):
            outcome = renice(self.cache, proc, change)
            self.say(str(outcome), severity="information" if outcome.status == "reniced" else "warning")

    def action_signal(self) -> None:
        """Confirm, then signal the tagged processes, or else the selected one."""
        targets = self.acted_on("signals")
        if not targets:
            return
        shown = [(p.pid, describe.user(p), p.command()) for p in targets]
        self.app.push_screen(SignalScreen(shown, SIGNALS), partial(self.signal_confirmed, targets))

    def signal_confirmed(self, targets: list, name: str | None) -> None:
        if name is None or not self.allow_signals:
            return
        sig = signal.Signals["SIG" + name]
        for proc in targets:
            outcome = send_signal(self.cache, proc, sig)
            severity: SeverityLevel = (
                "information" if outcome.status == "sent" else "warning" if outcome.status == "gone" else "error"
            )
            self.say(str(outcome), severity=severity)

    def action_snapshot(self) -> None:
        """Write what is shown (the filter applies) as a snapshot document; never over another file."""
        if not self.allow_writes:
            self.say("this served monitor writes no files (procscope serve --allow-writes)", severity="warning")
            return
        match = self.filter_query.predicate(self.cache) if self.filter_query else None
        # The execs the stream shows: those of the filter's processes, as the list.
        recent = [self.exporter.exec_event(p) for _, p in self.shown.execs if match is None or match(p)]
        doc = snapshot.document(self.cache, self.exporter, self.feed.counters, recent, self.source.label, match)
        try:
            directory = self.snapshot_dir or config.snapshot_dir()
            path = free_name(str(directory), f"procscope-snapshot-{time.strftime('%Y%m%d-%H%M%S')}", ".json")
            snapshot.write(path, doc, replace=False)
        except (OutputError, OSError) as exc:
            self.say(f"no snapshot written: {exc}", severity="error")
            return
        self.say(f"snapshot written to {path} ({len(doc['processes'])} processes, {len(recent)} recent execs)")
        self.last_snapshot = os.fspath(path)
