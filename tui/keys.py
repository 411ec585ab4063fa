"""The monitor's keys: htop's keys for htop's actions (the footer shows its
function keys); procscope's own on keys htop leaves free. The help screen
groups them; the command palette offers them."""

from __future__ import annotations

from textual.binding import Binding

KEYS = [
    Binding("f1,h,question_mark", "help", "Help"),
    Binding("f2,S", "setup", "Setup"),
    Binding("f3,slash", "prompt('search')", "Search"),
    Binding("n", "search_next(1)", "Next match of the search", show=False),
    Binding("N", "search_next(-1)", "Previous match of the search", show=False),
    Binding("f4,backslash", "prompt('filter')", "Filter"),
    Binding("f5,t", "toggle_tree", "Tree"),
    Binding("f6", "pick_sort", "SortBy"),
    Binding("less_than_sign", "step_sort(-1)", "Sort by the column to the left", show=False),
    Binding("greater_than_sign", "step_sort(1)", "Sort by the column to the right", show=False),
    Binding("P", "sort_by('CPU%')", "Sort by CPU%, the busiest first", show=False),
    Binding("M", "sort_by('MEM%')", "Sort by memory, the biggest first", show=False),
    Binding("T", "sort_by('TIME+')", "Sort by CPU time, the most first", show=False),
    Binding("I", "invert_sort", "Invert the sort order", show=False),
    Binding("f9,k", "signal", "Kill"),
    Binding("f10,q", "quit", "Quit"),
    Binding("space", "tag", "Tag or untag the process (signals go to the tagged ones)", show=False),
    Binding("c", "tag_children", "Tag the process and its children", show=False),
    Binding("U", "untag_all", "Untag all", show=False),
    Binding("u", "pick_user", "Show one user's processes", show=False),
    Binding("Z", "freeze", "Freeze the view (events still arrive behind it)", show=False),
    Binding("F", "follow", "Follow the selected process", show=False),
    Binding("plus", "expand", "Expand the subtree", show=False),
    Binding("minus", "collapse", "Collapse the subtree", show=False),
    Binding("asterisk", "expand_all", "Expand every subtree", show=False),
    Binding("enter", "toggle_detail", "The process's details: open or close", show=False),
    Binding("ctrl+down", "scroll_detail(4)", "Scroll the details down (capabilities, namespaces...)", show=False),
    Binding("ctrl+up", "scroll_detail(-4)", "Scroll the details up", show=False),
    Binding("tab", "next_panel(1)", "Next panel: execs, exits, losses", show=False, priority=True),
    Binding("shift+tab", "next_panel(-1)", "Previous panel", show=False, priority=True),
    Binding("E", "panel('execs')", "The exec stream", show=False),
    Binding("X", "panel('exits')", "The exits", show=False),
    Binding("Y", "panel('history')", "Every process seen, exited ones too (the filter narrows it)", show=False),
    Binding("L", "panel('drops')", "The losses: every counter, per op and errno, with rates", show=False),
    Binding("escape", "close_panels", "Close the panel (or the prompt)", show=False),
    Binding("C", "pick_container", "Show one container", show=False),
    Binding("g", "cycle_group", "Group by container, by cgroup, or not", show=False),
    Binding("W", "snapshot", "Write a snapshot of what is shown (mode 0600)", show=False),
    Binding("ctrl+t", "cycle_theme", "Next theme (remembered)", show=False),
    Binding("comma", "step_time(-1)", "One second back in time (a replay, or the live window)", show=False),
    Binding("full_stop", "step_time(1)", "One second forward in time", show=False),
    Binding("left_curly_bracket", "step_event(-1)", "One event back in time", show=False),
    Binding("right_curly_bracket", "step_event(1)", "One event forward in time", show=False),
    Binding(
        "at",
        "prompt('time')",
        "Go to a time (a replay, or the live window): RFC 3339, -30s, +10s or end",
        show=False,
    ),
]
