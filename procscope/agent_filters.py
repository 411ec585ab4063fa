"""Tetragon's event filters (GetEventsRequest's allow_list and deny_list),
on the objects the exporter makes, as Tetragon's agent applies them: an
event passes if it matches any filter of the allow list (or the list is
empty) and none of the deny list; a filter matches if each field it sets
does, and a field if any of its values does. Regular expressions search
(RE2's MatchString; Python's re, which reads the same for these)."""

from __future__ import annotations

from collections.abc import Callable

from procscope.api import tetragon_pb2 as pb

from .kinds import EXEC, EXIT, THROTTLE
from .regexes import searcher

# (event kind, what makes its object) → matches: the object is made only for a filter that reads it
# (tetra's --event-types, a filter on the kind alone, passes a storm without).
Predicate = Callable[[str, Callable[[], dict]], bool]

EVENT_TYPES = {EXEC: pb.PROCESS_EXEC, EXIT: pb.PROCESS_EXIT, THROTTLE: pb.PROCESS_THROTTLE}
UNSUPPORTED = ("labels", "policy_names", "capabilities", "cel_expression", "ancestor_binary_regex")


class FilterError(ValueError):
    """A filter procscope cannot apply (said to the client, not ignored)."""


def _process(kind: str, obj: Callable[[], dict], side: str = "process") -> dict:
    return obj().get(kind, {}).get(side) or {}


def _regexes(patterns, field: Callable[[str, Callable[[], dict]], str | None]) -> Predicate:
    try:
        compiled = [searcher(p) for p in patterns]
    except ValueError as exc:
        raise FilterError(f"bad regular expression: {exc}") from None

    def match(kind: str, obj: Callable[[], dict]) -> bool:
        value = field(kind, obj)
        return value is not None and any(found(value) for found in compiled)

    return match


def _one(f: pb.Filter) -> Predicate:
    for name in UNSUPPORTED:
        if f.HasField(name) if name == "capabilities" else getattr(f, name):
            raise FilterError(f"the {name} filter is not supported by procscope")
    tests: list[Predicate] = []
    if f.binary_regex:
        tests.append(_regexes(f.binary_regex, lambda k, o: _process(k, o).get("binary")))
    if f.parent_binary_regex:
        tests.append(_regexes(f.parent_binary_regex, lambda k, o: _process(k, o, "parent").get("binary")))
    if f.arguments_regex:
        tests.append(_regexes(f.arguments_regex, lambda k, o: _process(k, o).get("arguments")))
    if f.parent_arguments_regex:
        tests.append(_regexes(f.parent_arguments_regex, lambda k, o: _process(k, o, "parent").get("arguments")))
    if f.container_id:
        tests.append(_regexes(f.container_id, lambda k, o: _process(k, o).get("docker")))
    if f.pod_regex:
        tests.append(_regexes(f.pod_regex, lambda k, o: (_process(k, o).get("pod") or {}).get("name")))
    if f.namespace_regex:
        tests.append(_regexes(f.namespace_regex, lambda k, o: (_process(k, o).get("pod") or {}).get("namespace")))
    if f.container_name_regex:
        tests.append(_regexes(f.container_name_regex,
                              lambda k, o: ((_process(k, o).get("pod") or {}).get("container") or {}).get("name")))  # fmt: skip
    if f.namespace:  # a host process's namespace is "" (tetra --host asks for that)
        wanted_ns = set(f.namespace)
        tests.append(lambda k, o: (_process(k, o).get("pod") or {}).get("namespace", "") in wanted_ns)
    if f.pid:
        pids = set(f.pid)
        tests.append(lambda k, o: _process(k, o).get("pid") in pids)
    if f.pid_set:  # the pids and their descendants from then on (Tetragon's: for tests and development)
        family = set(f.pid_set)

        def in_family(k: str, o: Callable[[], dict]) -> bool:
            pid = _process(k, o).get("pid")
            if pid in family:
                return True
            if _process(k, o, "parent").get("pid") in family and k == EXEC:
                family.add(pid)
                return True
            return False

        tests.append(in_family)
    if f.event_set:
        types = set(f.event_set)
        tests.append(lambda k, o: EVENT_TYPES.get(k) in types)
    if f.HasField("in_init_tree"):
        want = f.in_init_tree.value
        tests.append(lambda k, o: bool(_process(k, o).get("in_init_tree", False)) == want)
    return lambda kind, obj: all(t(kind, obj) for t in tests)


def predicate(request: pb.GetEventsRequest) -> Predicate:
    """FilterError for a filter that cannot be applied."""
    allow = [_one(f) for f in request.allow_list]
    deny = [_one(f) for f in request.deny_list]

    def passes(kind: str, obj: Callable[[], dict]) -> bool:
        return (not allow or any(m(kind, obj) for m in allow)) and not any(m(kind, obj) for m in deny)

    return passes
