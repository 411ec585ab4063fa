"""The filter language over a real ProcessCache built from synthetic events."""

import argparse

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from procscope import describe
from procscope.accounts import user_name
from procscope.cache import ROOT, ProcessCache
from procscope.probes import wire
from procscope.probes.events import NAMESPACES, ProcessKey
from procscope.probes.names import CAPABILITIES
from procscope.query import FIELDS, Query, QueryError, Term, add_arguments, from_args

from .factories import HOST_NS, clone_event, exec_event, exit_event, namespaces

WEB = "3f2a9c0d" + "e1" * 28  # docker container ids: 64 hex digits
AGENT = "b7" * 32
DOCKER_CAPS = sum(
    1 << CAPABILITIES.index("CAP_" + name)
    for name in (
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SYS_CHROOT",
        "MKNOD",
        "AUDIT_WRITE",
        "SETFCAP",
    )  # docker's default
)
NOBODY = 65534

ALL = {1, 100, 200, 201, 202, 203, 204, 300, 400, 401, 402, 500, 900, 910, 911}
PLACEHOLDERS = {900, 910, 911}  # 911: a clone of a placeholder, so nothing is known of it either
NOT_FOUND = {900, 910}
ROOTS = {1, 100, 204, 400, 401, 402, 500}  # euid 0
IN_CONTAINERS = {401, 402, 500}


@pytest.fixture(scope="module")
def cache() -> ProcessCache:
    """init ─┬ sshd ── bash (uid 1000) ─┬ curl, python (clone then exec), ls (exited), sudo (setuid)
             ├ sleep (nobody, no caps)
             └ containerd-shim ─┬ nginx (container WEB: own net, pid, mnt, uts) ── curl
                                └ agent (container AGENT: own mnt only)
    plus placeholders: 900 (only its exit was seen), 910 (parent of a clone) and its clone 911."""
    web_ns = namespaces(net=1, pid=2, pid_for_children=2, mnt=3, uts=4)
    c = ProcessCache(host_ns=HOST_NS)
    c.apply_all([
        init := exec_event(1, 10, ROOT, "/sbin/init", ("splash",), cgroup="/init.scope"),
        sshd := exec_event(100, 20, init.key, "/usr/sbin/sshd", ("-D",), cgroup="/system.slice/ssh.service"),
        bash := exec_event(200, 30, sshd.key, "/bin/bash", ("--login",), uid=1000, caps=0,
                           cgroup="/user.slice/user-1000.slice/session-1.scope"),
        exec_event(201, 40, bash.key, "/usr/bin/curl", ("-sS", "-o", "/tmp/out file", "https://example.com/api?q=42"),
                   uid=1000, caps=0, cgroup=bash.cgroup_path),
        clone_event(202, 50, bash.key),
        exec_event(202, 55, bash.key, "/usr/bin/python3", ("-m", "http.server", "8080"), uid=1000, caps=0,
                   cleanup=ProcessKey(202, 50), cgroup=bash.cgroup_path),
        ls := exec_event(203, 60, bash.key, "/usr/bin/ls", ("-la",), uid=1000, caps=0, cgroup=bash.cgroup_path),
        exit_event(ls.key, 65),
        exec_event(204, 70, bash.key, "/usr/bin/sudo", ("-i",), privileges=wire.EXECVE_SETUID, cgroup=bash.cgroup_path),
        exec_event(300, 80, init.key, "/usr/bin/sleep", ("infinity",), uid=NOBODY, caps=0,
                   cgroup="/system.slice/sleeper.service"),
        shim := exec_event(400, 90, init.key, "/usr/bin/containerd-shim-runc-v2", ("-namespace", "moby", "-id", WEB),
                           cgroup="/system.slice/containerd.service"),
        nginx := exec_event(401, 100, shim.key, "/usr/sbin/nginx", ("-g", "daemon off;"), caps=DOCKER_CAPS, ns=web_ns,
                            nspid=1, cgroup=f"/system.slice/docker-{WEB}.scope"),
        exec_event(402, 110, nginx.key, "/usr/bin/curl", ("http://localhost/",), caps=DOCKER_CAPS, ns=web_ns, nspid=7,
                   cgroup=nginx.cgroup_path),
        exec_event(500, 120, shim.key, "/usr/local/bin/agent", ("--privileged",), ns=namespaces(mnt=5),
                   cgroup=f"/system.slice/docker-{AGENT}.scope"),
        exit_event(ProcessKey(900, 5), 130),
        clone_event(911, 140, ProcessKey(910, 7)),
    ])  # fmt: skip
    return c


def pids(cache: ProcessCache, text: str) -> set[int]:
    found = Query.parse(text).filter(cache, cache.visible())
    assert len(found) == len({p.pid for p in found})  # replaced images are not visible
    return {p.pid for p in found}


def test_the_scene_is_what_the_tests_assume(cache):
    assert {p.pid for p in cache.visible()} == ALL
    assert {p.pid for p in cache.visible() if p.image is None} == PLACEHOLDERS
    assert 203 not in cache.by_pid and cache.get(ProcessKey(203, 60)).in_grace  # ls exited
    assert cache.by_pid[202].binary == "/usr/bin/python3"


def test_empty_query_matches_everything(cache):
    assert not Query.parse("  ") and Query.parse("") == Query()
    assert pids(cache, "") == ALL


@pytest.mark.parametrize(
    "text, expected",
    [
        ("container:3f2a", {401, 402}),
        ("container:3F2A9C", {401, 402}),  # case-insensitive prefix
        (f"container:{WEB}", {401, 402}),
        ("container:b7", {500}),
        ("container:3f2b", set()),
        ("container:host", ALL - IN_CONTAINERS),
        ("-container:host", IN_CONTAINERS),
        ("!container:3f2a", ALL - {401, 402}),
    ],
)
def test_container(cache, text, expected):
    assert pids(cache, text) == expected


def test_user_by_name_and_uid(cache):
    assert pids(cache, "user:root") == pids(cache, "user:0") == ROOTS
    assert pids(cache, "user:1000") == {200, 201, 202, 203}
    assert pids(cache, f"user:{user_name(NOBODY)}") == pids(cache, f"user:{NOBODY}") == {300}
    # A name this machine does not have can match nothing: refused, as htop's -u refuses it.
    with pytest.raises(QueryError, match="unknown user 'nosuchuser' in 'user:nosuchuser'"):
        Query.parse("user:nosuchuser")
    with pytest.raises(QueryError, match="unknown user"):  # a NUL typed (or pasted) is no user, not a crash
        Query.parse("user:a\x00b")
    # A placeholder's user is unknown: neither user:X nor -user:X claims it.
    assert pids(cache, "-user:root") == ALL - ROOTS - PLACEHOLDERS


def test_bin_and_args_substrings_and_regexes(cache):
    assert pids(cache, "bin:curl") == {201, 402}
    assert pids(cache, "bin:/bin/") == ALL - PLACEHOLDERS  # regex "bin": /sbin/ too
    assert pids(cache, r"bin:/^\/usr\/bin\/c/") == {201, 400, 402}
    assert pids(cache, "bin:/curl$/") == {201, 402}
    assert pids(cache, "bin:CURL") == set()  # text is case-sensitive...
    assert pids(cache, "bin:/(?i)CURL/") == {201, 402}  # ...unless the regex says otherwise
    assert pids(cache, 'args:"/tmp/out file"') == {201}  # the joined arguments, quoted in the query
    assert pids(cache, r"args:/\?q=\d+$/") == {201}  # backslashes need no quoting
    assert pids(cache, r"args:'/\?q=\d+$/'") == {201}
    assert pids(cache, r"args:/https?:\/\//") == {201, 402}
    assert pids(cache, "args:curl") == set()  # the binary is not in args
    assert pids(cache, "args:'daemon off;'") == {401}
    assert pids(cache, "args:--privileged") == {500}


def test_bare_words_match_binary_or_args(cache):
    assert pids(cache, "curl") == {201, 402}  # binary
    assert pids(cache, "8080") == {202}  # args
    assert pids(cache, "moby") == {400}
    assert pids(cache, f"{WEB[:8]}") == {400}  # in the shim's args, not a container filter
    assert pids(cache, "/^-[a-zA-Z]$/") == {100, 204}  # a regex too
    assert pids(cache, "-curl") == ALL - {201, 402} - PLACEHOLDERS


def test_cap_in_effective_set(cache):
    full = {1, 100, 204, 400, 500}
    assert pids(cache, "cap:SYS_ADMIN") == pids(cache, "cap:cap_sys_admin") == pids(cache, "cap:CAP_SYS_ADMIN") == full
    assert pids(cache, "cap:net_raw") == full | {401, 402}
    assert pids(cache, "-cap:SYS_ADMIN") == ALL - full - PLACEHOLDERS
    assert pids(cache, "cap:CHECKPOINT_RESTORE") == full  # the last known bit


def test_ns_differs_from_host(cache):
    assert pids(cache, "ns:net") == pids(cache, "ns:pid") == pids(cache, "ns:NET") == {401, 402}
    assert pids(cache, "ns:mnt") == pids(cache, "ns:any") == IN_CONTAINERS
    assert pids(cache, "ns:user") == pids(cache, "ns:time") == set()
    assert pids(cache, "-ns:any") == ALL - IN_CONTAINERS - PLACEHOLDERS


def test_ns_claims_nothing_without_a_host_reference(cache):
    blind = ProcessCache()  # host namespaces unreadable
    blind.apply(exec_event(1, 1, ROOT, ns=namespaces(net=1)))
    assert Query.parse("ns:any").filter(blind, blind.visible()) == []


def test_pid_takes_the_subtree(cache):
    assert pids(cache, "pid:200") == {200, 201, 202, 203, 204}  # with the exited ls, still in grace
    assert pids(cache, "pid:0200") == {200, 201, 202, 203, 204}
    assert pids(cache, "pid:400") == {400, 401, 402, 500}
    assert pids(cache, "pid:1") == ALL - PLACEHOLDERS
    assert pids(cache, "pid:910") == {910, 911}  # placeholders have a tree too
    assert pids(cache, "pid:203") == {203}  # exited, in its grace period: its exit event must match too
    assert pids(cache, "pid:99999") == set()
    assert pids(cache, "-pid:100") == ALL - {100, 200, 201, 202, 203, 204}
    assert pids(cache, "pid:1 pid:401") == {401, 402}


def test_badges(cache):
    assert pids(cache, "badge:root") == ROOTS
    assert pids(cache, "badge:setuid") == pids(cache, "badge:caps+") == {204}
    assert pids(cache, "badge:ns") == IN_CONTAINERS
    assert pids(cache, "badge:notfound") == NOT_FOUND
    assert pids(cache, "-badge:notfound") == ALL - NOT_FOUND
    assert pids(cache, "-badge:root") == ALL - ROOTS - PLACEHOLDERS  # unknown for placeholders


def test_cgroup_substring(cache):
    assert pids(cache, "cgroup:docker-") == IN_CONTAINERS
    assert pids(cache, "cgroup:session-1.scope") == {200, 201, 202, 203, 204}
    assert pids(cache, "-cgroup:system.slice") == {1, 200, 201, 202, 203, 204} | PLACEHOLDERS


def test_placeholders_match_only_what_is_known(cache):
    assert pids(cache, "container:host badge:notfound -cgroup:docker") == NOT_FOUND
    for text in ("user:0", "-user:0", "bin:x", "-bin:x", "args:x", "-args:x", "x", "-x",
                 "cap:KILL", "-cap:KILL", "ns:any", "-ns:any", "badge:root", "-badge:root"):  # fmt: skip
        assert pids(cache, text) & PLACEHOLDERS == set(), text


def test_terms_are_anded(cache):
    assert pids(cache, "container:3f2a bin:curl") == {402}
    assert pids(cache, "user:root cap:SYS_ADMIN -pid:400") == {1, 100, 204}
    assert pids(cache, "container:3f2a user:root cap:SYS_ADMIN ns:net bin:curl") == set()
    assert pids(cache, "container:3f2a user:root cap:NET_RAW ns:net bin:curl") == {402}
    a, b = Query.parse("user:root"), Query.parse("-container:host")
    assert a.and_(b) == Query.parse("user:root -container:host")
    assert pids(cache, str(a.and_(b))) == {401, 402, 500}
    assert a.and_(Query()) == a and bool(a)


def test_predicate_and_filter_agree(cache):
    q = Query.parse("pid:200 -bin:/ls$/")
    match = q.predicate(cache)
    assert [p for p in cache.visible() if match(p)] == q.filter(cache, cache.visible())
    assert {p.pid for p in q.filter(cache, cache.visible())} == {200, 201, 202, 204}


@pytest.mark.parametrize(
    "text, message",
    [
        ("foo:bar", ("unknown filter field 'foo' in 'foo:bar'; use one of: "
                     "container, image, pod, k8s-ns, user, bin, args, cap, ns, pid, badge, cgroup")),
        ("user:", "empty value in 'user:'; put a value after the ':' or drop the term"),
        ("-bin:", "empty value in '-bin:'"),
        ("bin:/[a-/", "bad regex in 'bin:/[a-/': "),
        ("args:/(/", "bad regex in 'args:/(/': missing ): (; fix it (RE2's syntax, as Tetragon's)"),
        ("bin:/(?=x)/", "bad regex in 'bin:/(?=x)/': invalid perl operator: (?="),  # as Tetragon (Go) refuses it
        ("pid:abc", "pid must be a number, not 'abc' in 'pid:abc'; write e.g. pid:1234"),
        ("pid:-3", "pid must be a number, not '-3'"),
        ("cap:FLY", "unknown capability 'FLY' in 'cap:FLY'; use a name from capabilities(7)"),
        ("ns:netw", "unknown namespace 'netw' in 'ns:netw'; use one of: any, uts, ipc, mnt, pid,"),
        ("badge:evil", "unknown badge 'evil' in 'badge:evil'; use one of: root, setuid,"),
        ('args:"unclosed', "cannot split 'args:\"unclosed': No closing quotation; close the quote"),
        ("bin:it's", "cannot split \"bin:it's\": No closing quotation; close the quote, or quote a lone quote"),
        ("-", "empty term '-'; write FIELD:VALUE or a word"),
        ("user:root ''", "empty term ''"),
        ("--verbose", "a bare word cannot hold ':' or start with '-' or '!' ('--verbose'); use bin:VALUE or args:VALUE"),
        ("http://x", "unknown filter field 'http' in 'http://x'"),
    ],
)  # fmt: skip
def test_parse_errors_are_one_line_with_a_fix(text, message):
    with pytest.raises(QueryError) as info:
        Query.parse(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value) and "; " in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("container:3F2A user:root cap:sys_admin ns:NET bin:curl", "container:3F2A user:root cap:SYS_ADMIN ns:net bin:curl"),  # a name keeps its case
        ('args:"foo bar" !bin:x -pid:007', "args:'foo bar' -bin:x -pid:7"),
        ("badge:CAPS+ cgroup:/system.slice/", "badge:caps+ cgroup:/system.slice/"),
        (r"""bin:/^\/usr/ "it's" args:'say "hi"'""", r"""bin:'/^\/usr/' 'it'"'"'s' args:'say "hi"'"""),
        ("args:-v cap:CAP_NET_RAW", "args:-v cap:NET_RAW"),
    ],
)  # fmt: skip
def test_str_is_canonical_and_parses_back(text, canonical):
    q = Query.parse(text)
    assert str(q) == canonical
    assert Query.parse(str(q)) == q


def test_terms_compare_by_meaning():
    assert Term("cap", "cap_net_raw") == Term("cap", "NET_RAW")
    assert Term("user", "root", negate=True) != Term("user", "root")
    assert Query.parse("!user:root") == Query.parse("-user:root")
    with pytest.raises(QueryError):
        Term("", "a:b")  # str() could not write it back


def test_fields_help():
    assert list(FIELDS) == [
        "container",
        "image",
        "pod",
        "k8s-ns",
        "user",
        "bin",
        "args",
        "cap",
        "ns",
        "pid",
        "badge",
        "cgroup",
    ]
    assert all(text and "\n" not in text for text in FIELDS.values())
    assert all(name in FIELDS["ns"] for name in NAMESPACES) and all(b in FIELDS["badge"] for b in describe.BADGES)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procscope")
    parser.add_argument("--count", type=int)  # the CLI's own options live beside the group
    add_arguments(parser)
    return parser


def test_from_args_combines_every_option(cache):
    args = _parser().parse_args([
        "--filter", "container:3f2a -bin:nginx", "--user", "root", "--cap", "net_raw",
        "--ns", "net", "--pid", "400", "--bin", "curl", "--args", "http://localhost/", "--filter", "cgroup:docker",
    ])  # fmt: skip
    q = from_args(args)
    assert (
        str(q)
        == "container:3f2a -bin:nginx cgroup:docker user:root bin:curl args:http://localhost/ cap:NET_RAW ns:net pid:400"
    )
    assert {p.pid for p in q.filter(cache, cache.visible())} == {402}


def test_from_args_takes_values_literally(cache):
    args = _parser().parse_args(["--args", "/tmp/out file", "--container", "host", "--container", "3f"])
    q = from_args(args)
    assert q.terms == (Term("container", "host"), Term("container", "3f"), Term("args", "/tmp/out file"))
    assert Query.parse(str(q)) == q
    assert q.filter(cache, cache.visible()) == []  # host and 3f… at once: nothing
    assert {
        p.pid for p in from_args(_parser().parse_args(["--args", "/tmp/out file"])).filter(cache, cache.visible())
    } == {201}


def test_a_comma_is_or_within_a_field(cache):
    """Issue 28, point 10: FIELD:A,B is either value (for fields whose values hold no comma); htop's -p PID,PID."""
    assert pids(cache, "pid:200,400") == pids(cache, "pid:200") | pids(cache, "pid:400")
    assert pids(cache, "badge:setuid,notfound") == {204} | NOT_FOUND  # a placeholder may match notfound
    assert pids(cache, "-user:root,1000") == ALL - ROOTS - {200, 201, 202, 203} - PLACEHOLDERS
    assert pids(cache, "user:root,1000") == ROOTS | {200, 201, 202, 203}
    assert str(Query.parse("cap:sys_admin,cap_net_raw")) == "cap:SYS_ADMIN,NET_RAW"
    with pytest.raises(QueryError, match="unknown user 'nosuchuser'"):
        Query.parse("user:root,nosuchuser")
    with pytest.raises(QueryError, match="empty value in 'pid:1,'; separate values by single commas"):
        Query.parse("pid:1,")
    assert pids(cache, "args:a,b") == set()  # text fields keep their commas (a regex says either: /a|b/)
    q = from_args(_parser().parse_args(["-p", "200,400", "-u", "root"]))
    assert str(q) == "user:root pid:200,400" and {p.pid for p in q.filter(cache, cache.visible())} == {
        204,
        400,
        401,
        402,
        500,
    }


def test_from_args_without_filters_is_empty():
    assert from_args(_parser().parse_args([])) == Query()
    assert from_args(argparse.Namespace()) == Query()  # a parser without the group


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cap", "FLY"], "--cap: unknown capability 'FLY'"),
        (["--pid", "x1"], "--pid: pid must be a number"),
        (["--user", ""], "--user: empty value"),
        (["--filter", "foo:bar"], "--filter: unknown filter field 'foo'"),
        (["--bin", "/(/"], "--bin: bad regex"),
    ],
)
def test_from_args_errors_name_the_option(argv, message):
    with pytest.raises(QueryError, match="^" + message.replace("(", r"\(")):
        from_args(_parser().parse_args(argv))


def test_add_arguments_help():
    text = _parser().format_help()
    assert "filters:" in text
    for option in ("--filter QUERY", "--container NAME|ID", "--image IMAGE", "--pod POD", "--k8s-ns NAMESPACE", "--user USER", "--bin TEXT", "--args TEXT", "--cap CAP",
                   "--ns NAME", "--pid PID"):  # fmt: skip
        assert option in text


# -- round trips over generated queries ----------------------------------------


def _mixed_case(s: str) -> st.SearchStrategy[str]:
    return st.sampled_from([s, s.lower(), s.upper(), s.capitalize()])


# Characters the quoting must survive, mixed with any others.
_TEXT = st.text(st.sampled_from(" \t\n'\"\\:-!/#$*;") | st.characters(), min_size=1, max_size=16)
_VALUES = {
    "container": st.one_of(st.just("host"), st.text("0123456789abcdefABCDEF", min_size=1, max_size=64)),
    "user": _TEXT,
    "bin": _TEXT,
    "args": _TEXT,
    "cap": st.sampled_from(CAPABILITIES).map(lambda c: c.removeprefix("CAP_")).flatmap(_mixed_case),
    "ns": st.sampled_from(("any", *NAMESPACES)).flatmap(_mixed_case),
    "pid": st.integers(0, 1 << 22).map(str),
    "badge": st.sampled_from(list(describe.BADGES)).flatmap(_mixed_case),
    "cgroup": _TEXT,
    "": _TEXT.filter(lambda s: ":" not in s and s[0] not in "-!"),
}


@st.composite
def _terms(draw) -> Term:
    field = draw(st.sampled_from(list(_VALUES)))
    value, negate = draw(_VALUES[field]), draw(st.booleans())
    try:
        return Term(field, value, negate)
    except QueryError:
        assume(False)  # e.g. a generated /.../ that is not a valid regex
        raise


@given(st.lists(_terms(), max_size=6))
def test_str_parse_round_trips(terms):
    q = Query(tuple(terms))
    text = str(q)
    assert Query.parse(text) == q
    assert str(Query.parse(text)) == text


@given(st.lists(st.sampled_from([*" '\"\\:-!/(x", *FIELDS, "any", "SYS_ADMIN", "root"]), max_size=20).map("".join))
def test_parse_raises_only_query_errors(text):
    try:
        q = Query.parse(text)
    except QueryError as exc:
        assert "\n" not in str(exc)
        return
    assert Query.parse(str(q)) == q


def test_container_names_images_and_pods_come_from_what_the_runtimes_said():
    """container: takes a name too; image:, pod: and k8s-ns: ask the runtime's
    description (here as a recording would hold it)."""
    from procscope.containers import container_of
    from procscope.runtimes import ContainerInfo, Pod

    from .factories import DOCKER, exec_event

    cache = ProcessCache()
    init = exec_event(1, 10, ROOT, "/sbin/init")
    web = exec_event(300, 20, init.key, "/bin/httpd", cgroup=DOCKER)
    cache.apply_all([init, web])
    c = container_of(DOCKER)
    cache.cgroup_index.info[c.id] = ContainerInfo(
        c.id, "docker", "web-1", "nginx:1.27", "sha256:abcdef", pod=Pod("shop-1", "prod")
    )

    def shown(text: str) -> list[int]:
        match = Query.parse(text).predicate(cache)
        return sorted(p.pid for p in cache.by_pid.values() if match(p))

    assert shown("container:web-1") == shown("container:" + c.id[:6]) == shown("image:nginx") == [300]
    assert shown("image:abcd") == shown("pod:shop-1") == shown("pod:prod/shop-1") == shown("k8s-ns:prod") == [300]
    assert shown("container:web") == shown("pod:shop") == shown("k8s-ns:dev") == []  # names are whole
    assert shown("-container:web-1") == [1]


def test_a_regex_runs_in_time_linear_in_the_text_whatever_the_pattern():
    """RE2, as Tetragon's filters: a pattern a backtracking engine takes hours
    over (2^40 ways to split 40 a's) against a process's arguments, at once."""
    from procscope.regexes import searcher

    nested = searcher("(a+)+$")
    assert not nested("a" * 40 + "!") and nested("xaaa")
    assert searcher(r"^/usr/s?bin/\w+$")("/usr/sbin/nginx")
