"""The filter language, one for the UI and the CLI.

    container:3f2a user:root cap:SYS_ADMIN ns:net -bin:sshd args:"foo bar" curl

Text is split as a shell splits it (quotes keep spaces), except that a
backslash is an ordinary character, for regexes. Terms are ANDed; a
leading ``-`` or ``!`` negates one; ``field:a,b`` is either value (for the
fields whose values hold no comma: OR_FIELDS; text fields take a regex,
``bin:/sshd|nginx/``). ``field:value`` tests one field (FIELDS);
a bare word matches the binary or the arguments, as htop's filter does
(case-sensitive like every text field; /(?i)word/ ignores case).

A placeholder (its exec or clone was lost) has no image: a term about the
image is false for it whether negated or not, so a filter never claims what
the cache does not know.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from procscope.probes import names
from procscope.probes.events import NAMESPACES, ProcessKey

from . import describe
from .accounts import uid_of
from .cache import Process, ProcessCache
from .regexes import searcher

FIELDS: dict[str, str] = {
    "container": "container name, or id prefix (case-insensitive); 'host' for processes in no container",
    "image": "text in the container's image name (or its sha256 id prefix)",
    "pod": "Kubernetes pod name, or NAMESPACE/NAME",
    "k8s-ns": "Kubernetes namespace of the pod",
    "user": "user name, or numeric uid (the effective one, as ps shows)",
    "bin": "text in the binary path; /REGEX/ for a regex search",
    "args": "text in the arguments (joined by spaces); /REGEX/ for a regex search",
    "cap": "effective capability, e.g. SYS_ADMIN or cap_net_raw",
    "ns": "namespace that differs from the host's: any, " + ", ".join(NAMESPACES),
    "pid": "process PID and everything below it in the tree",
    "badge": "has a badge: " + ", ".join(describe.BADGES),
    "cgroup": "text in the cgroup path",
}
SYNTAX = ("terms are ANDed; -term or !term negates; FIELD:A,B is either value (bin and args: /A|B/); a bare word"
          " matches binary or args; quote values with spaces")  # fmt: skip

# Fields whose values never hold a comma: there FIELD:A,B means A or B.
OR_FIELDS = frozenset({"container", "pod", "k8s-ns", "user", "cap", "ns", "pid", "badge"})
# Fields about the image: unknown for placeholders (badge:notfound is not).
_IMAGE_FIELDS = frozenset({"", "user", "bin", "args", "cap", "ns"})
_OPTIONS = {
    "container": "NAME|ID",
    "image": "IMAGE",
    "pod": "POD",
    "k8s-ns": "NAMESPACE",
    "user": "USER",
    "bin": "TEXT",
    "args": "TEXT",
    "cap": "CAP",
    "ns": "NAME",
    "pid": "PID",
}


class QueryError(ValueError):
    """A query that cannot be parsed; the message is one line: problem; fix."""


@dataclass(frozen=True)
class Term:
    field: str  # a FIELDS key, or "" for a bare word
    value: str  # normalised on construction (cap:cap_net_raw → NET_RAW, pid:007 → 7)
    negate: bool = False
    # Compiled once: a text matcher, capability bit, uid or pid.
    arg: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        token = ("-" if self.negate else "") + (f"{self.field}:{self.value}" if self.field else self.value)
        if self.field in OR_FIELDS and "," in self.value:  # either value: a term each, any of them matches
            if not all(self.value.split(",")):
                raise QueryError(f"empty value in {token!r}; separate values by single commas: {self.field}:A,B")
            alternatives = tuple(Term(self.field, v) for v in self.value.split(","))
            value, arg = ",".join(t.value for t in alternatives), alternatives
        else:
            value, arg = _compile(self.field, self.value, token)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "arg", arg)

    @property
    def needs_image(self) -> bool:
        if isinstance(self.arg, tuple):
            return all(t.needs_image for t in self.arg)  # badge:notfound,setuid: a placeholder may match
        return self.field in _IMAGE_FIELDS or (self.field == "badge" and self.value != "notfound")

    def __str__(self) -> str:
        body = f"{self.field}:{shlex.quote(self.value)}" if self.field else shlex.quote(self.value)
        return "-" + body if self.negate else body


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))

    @classmethod
    def parse(cls, text: str) -> Query:
        lexer = shlex.shlex(text, posix=True)
        lexer.whitespace_split, lexer.commenters = True, ""  # as shlex.split does
        lexer.escape = ""  # backslashes stay: regexes need them (bin:/\.so$/); quotes still group
        try:
            tokens = list(lexer)
        except ValueError as exc:  # the only complaint left: an unclosed quote
            raise QueryError(
                f"cannot split {text!r}: {exc}; close the quote, or quote a lone quote with the other kind"
            ) from None
        terms = []
        for token in tokens:
            negate = token[:1] in ("-", "!")
            body = token[1:] if negate else token
            if not body:
                raise QueryError(f"empty term {token!r}; write FIELD:VALUE or a word, with - or ! before it to negate")
            field, colon, value = body.partition(":")
            terms.append(Term(field, value, negate) if colon else Term("", body, negate))
        return cls(tuple(terms))

    def __str__(self) -> str:
        return " ".join(map(str, self.terms))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def and_(self, other: Query) -> Query:
        return Query(self.terms + other.terms)

    def predicate(self, cache: ProcessCache) -> Callable[[Process], bool]:
        """A test for processes of ``cache`` as it is now: pid subtrees are
        taken here, so build a new one after applying events."""
        tests = [(t.negate, t.needs_image, _matcher(t, cache)) for t in self.terms]

        def match(proc: Process) -> bool:
            for negate, needs_image, test in tests:
                if (needs_image and proc.image is None) or test(proc) == negate:
                    return False
            return True

        return match

    def about_cgroups(self) -> Query:
        """Only the terms about where a process runs (container, cgroup):
        what applies to events about a cgroup rather than a process."""
        return Query(tuple(t for t in self.terms if t.field in ("container", "cgroup")))

    def filter(self, cache: ProcessCache, procs: Iterable[Process]) -> list[Process]:
        match = self.predicate(cache)
        return [p for p in procs if match(p)]


def _compile(field: str, value: str, token: str) -> tuple[str, Any]:
    """The normalised value and what matching needs, or QueryError."""
    if field and field not in FIELDS:
        raise QueryError(f"unknown filter field {field!r} in {token!r}; use one of: {', '.join(FIELDS)}")
    if not value:
        raise QueryError(f"empty value in {token!r}; put a value after the ':' or drop the term")
    if field == "":
        # Otherwise str() could not write it back: ':' would make a field, '-' a negation.
        if ":" in value or value[0] in "-!":
            raise QueryError(
                f"a bare word cannot hold ':' or start with '-' or '!' ({token!r}); use bin:VALUE or args:VALUE"
            )
        return value, _text_matcher(value, token)
    if field in ("bin", "args"):
        return value, _text_matcher(value, token)
    if field == "container":
        return value, None
    if field in ("image", "pod", "k8s-ns"):
        return value, None
    if field == "user":
        if value.isascii() and value.isdigit():
            return value, int(value)
        if uid_of(value) is None:  # names are this machine's (a recording's uids are named here too)
            raise QueryError(f"unknown user {value!r} in {token!r}; use a name of this machine's or a numeric uid")
        return value, None
    if field == "cap":
        bit = names.cap_bit(value)
        if bit is None:
            raise QueryError(
                f"unknown capability {value!r} in {token!r}; use a name from capabilities(7), e.g. SYS_ADMIN"
            )
        return names.CAPABILITIES[bit].removeprefix("CAP_"), bit
    if field == "ns":
        name = value.lower()
        if name != "any" and name not in NAMESPACES:
            raise QueryError(f"unknown namespace {value!r} in {token!r}; use one of: any, {', '.join(NAMESPACES)}")
        return name, None
    if field == "pid":
        if not (value.isascii() and value.isdigit()):
            raise QueryError(f"pid must be a number, not {value!r} in {token!r}; write e.g. pid:1234")
        return str(int(value)), int(value)
    if field == "badge":
        name = value.lower()
        if name not in describe.BADGES:
            raise QueryError(f"unknown badge {value!r} in {token!r}; use one of: {', '.join(describe.BADGES)}")
        return name, None
    return value, None  # cgroup: plain substring


def _text_matcher(value: str, token: str) -> Callable[[str], bool]:
    if len(value) > 2 and value[0] == value[-1] == "/":
        try:
            return searcher(value[1:-1])
        except ValueError as exc:
            raise QueryError(
                f"bad regex in {token!r}: {exc}; fix it (RE2's syntax, as Tetragon's), or drop the surrounding '/' "
                "to match text"
            ) from None
    return lambda text: value in text


def _matcher(term: Term, cache: ProcessCache) -> Callable[[Process], bool]:
    """The un-negated test; image fields are only asked of processes with an image."""
    value, arg = term.value, term.arg
    if isinstance(arg, tuple):  # FIELD:A,B
        tests = [(t.needs_image, _matcher(t, cache)) for t in arg]
        return lambda p: any(test(p) for needs_image, test in tests if not (needs_image and p.image is None))
    match term.field:
        case "container":
            if value == "host":
                return lambda p: p.container is None
            prefix = value.lower()

            def named(p: Process) -> bool:
                if p.container is None:
                    return False
                info = cache.cgroup_index.info_of(p.container)
                return p.container.id.startswith(prefix) or (info is not None and info.name == value)

            return named
        case "image":

            def image(p: Process) -> bool:
                info = cache.cgroup_index.info_of(p.container)
                return info is not None and (
                    value in info.image
                    or bool(info.image_id)
                    and info.image_id.removeprefix("sha256:").startswith(value.removeprefix("sha256:"))
                )

            return image
        case "pod" | "k8s-ns":

            def pod(p: Process) -> bool:
                info = cache.cgroup_index.info_of(p.container)
                if info is None or info.pod is None:
                    return False
                if term.field == "k8s-ns":
                    return info.pod.namespace == value
                return value in (info.pod.name, f"{info.pod.namespace}/{info.pod.name}")

            return pod
        # These fields' tests are asked only of processes with an image (Term.needs_image).
        case "user":
            return lambda p: p.image.uid == arg or describe.user(p) == value  # type: ignore[union-attr]
        case "bin":
            return lambda p: arg(p.image.binary)  # type: ignore[union-attr]
        case "args":
            return lambda p: arg(" ".join(p.image.args))  # type: ignore[union-attr]
        case "":
            return lambda p: arg(p.image.binary) or arg(" ".join(p.image.args))  # type: ignore[union-attr]
        case "cap":
            return lambda p: bool(p.image.creds.caps.effective >> arg & 1)  # type: ignore[union-attr]
        case "ns":
            host = cache.host_ns
            if value == "any":
                return lambda p: bool(describe.non_host_namespaces(p.image.ns, host))  # type: ignore[union-attr]
            return lambda p: value in describe.non_host_namespaces(p.image.ns, host)  # type: ignore[union-attr]
        case "pid":
            return _within_pid(cache, arg)
        case "badge":
            return lambda p: value in describe.badges(p, cache)
        case _:
            return lambda p: value in p.cgroup


def _within_pid(cache: ProcessCache, pid: int) -> Callable[[Process], bool]:
    """Whether a process has ``pid`` (alive, or exited in its grace period)
    or descends from it in the tree, asked of the tree as it is when a
    process is tested: processes cloned since the predicate was made are in
    (it is memoised per ancestor)."""
    memo: dict[ProcessKey, bool] = {}

    def within(proc: Process) -> bool:
        path: list[ProcessKey] = []
        node: Process | None = proc
        found = False
        while node is not None and len(path) < 4096:  # bounded: the tree has no cycles, but never loop
            known = memo.get(node.key)
            if known is not None:
                found = known
                break
            if node.pid == pid and node.visible:  # alive, or exited and still shown (its exit matches too)
                found = True
                break
            path.append(node.key)
            node = cache.procs.get(node.tree_parent)
        for key in path:
            memo[key] = found
        return found

    return within


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters", "show only matching processes; all filters are ANDed")
    group.add_argument(
        "--filter", action="append", metavar="QUERY",
        help=f"a query such as 'container:3f2a user:root -bin:sshd'; {SYNTAX}; fields: {', '.join(FIELDS)}",
    )  # fmt: skip
    for field, metavar in _OPTIONS.items():
        # One value each, as the shell split it: no quoting or negation (--filter has those); /REGEX/ works.
        flags = {"user": ("-u", "--user"), "pid": ("-p", "--pid")}.get(field, (f"--{field}",))  # htop's -u, -p
        extra = "; live, one this machine has (else refused, with the names it has)" if field == "container" else ""
        group.add_argument(*flags, action="append", metavar=metavar, dest=f"filter_{field}", help=FIELDS[field] + extra)


def from_args(args: argparse.Namespace, containers: Callable[[], list[tuple[str, str]]] | None = None) -> Query:
    """All filter options as one Query; QueryError names the bad option.
    ``containers``: the (id, name) of those there are, when a container
    named that is none of them must be refused (a live source)."""
    known = functools.cache(containers) if containers is not None else None
    query = Query()
    for text in getattr(args, "filter", None) or ():
        try:
            query = query.and_(_checked(Query.parse(text), known))
        except QueryError as exc:
            raise QueryError(f"--filter: {exc}") from None
    terms = []
    for field in _OPTIONS:
        for value in getattr(args, f"filter_{field}", None) or ():
            try:
                terms.append(Term(field, value))
                _checked(Query((terms[-1],)), known)
            except QueryError as exc:
                raise QueryError(f"--{field}: {exc}") from None
    return query.and_(Query(tuple(terms)))


def _checked(query: Query, known: Callable[[], list[tuple[str, str]]] | None) -> Query:
    """The query, or QueryError for a container it asks for that is none of ``known()``."""
    if known is None:
        return query
    for term in query.terms:
        if term.field != "container" or term.negate:  # excluding one that is not there excludes nothing
            continue
        for t in term.arg if isinstance(term.arg, tuple) else (term,):
            there = known()
            if t.value == "host" or any(cid.startswith(t.value.lower()) or name == t.value for cid, name in there):
                continue
            names = sorted({name or cid[:12] for cid, name in there})
            some = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            raise QueryError(
                f"no container {t.value!r} on this machine ({'known: ' + some if names else 'there is none'}); "
                "name one, give an id prefix, or 'host' for the processes in none"
            )
    return query
