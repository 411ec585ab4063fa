"""The event kinds of Tetragon's JSON export and procscope's own, each
spelled here once: the exporter writes them, the replay reads them, the
compact text names them."""

from __future__ import annotations

# Tetragon's (tetragon.GetEventsResponse's fields), in the JSON export.
EXEC = "process_exec"
EXIT = "process_exit"
THROTTLE = "process_throttle"
# procscope's own: a recording's superset of the export (tetra skips them).
CLONE = "procscope_clone"
CGROUP = "procscope_cgroup"
CREDS = "procscope_creds"
COUNTERS = "procscope_counters"
USAGE = "procscope_usage"

EXTRA = "procscope"  # procscope's own fields of an object, under one key (tetra ignores it)
