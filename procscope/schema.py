"""Tetragon's process object (api/v1/tetragon: Process and the messages it
holds, protojson names) and procscope's own object beside it, as msgspec
Structs: the exporter builds them, the replay reads recordings into them.
Each field is named here once, with what it may hold: a field left UNSET
is not written, and was not in what was read. Numbers must fit the
kernel's field; protojson's 64-bit numbers come as strings (``Wide``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from .kinds import EXTRA

U32 = Annotated[int, Meta(ge=0, lt=1 << 32)]
Wide = int | str  # a 64-bit number: protojson writes it as a string (records.number reads either)
# A field that may be absent (UNSET: not written, or not in what was read).
Id = U32 | UnsetType
Text = str | UnsetType


class Namespace(Struct, frozen=True, kw_only=True):
    inum: U32 = 0
    is_host: bool = False


class Capabilities(Struct, frozen=True, kw_only=True):
    permitted: list[str] = []
    effective: list[str] = []
    inheritable: list[str] = []


class UserNamespace(Struct, frozen=True, kw_only=True):
    level: U32 = 0
    uid: Id = UNSET  # unknown to the /proc scan in a nested namespace
    gid: Id = UNSET
    ns: Namespace = Namespace()


class ProcessCredentials(Struct, frozen=True, kw_only=True):
    # An id missing (older recordings) reads as the process's uid.
    uid: Id = UNSET
    gid: Id = UNSET
    euid: Id = UNSET
    egid: Id = UNSET
    suid: Id = UNSET
    sgid: Id = UNSET
    fsuid: Id = UNSET
    fsgid: Id = UNSET
    securebits: list[str] = []
    caps: Capabilities = Capabilities()
    user_ns: UserNamespace = UserNamespace()


class InodeProperties(Struct, frozen=True, kw_only=True):
    number: Wide = 0
    links: U32 = 1


class FileProperties(Struct, frozen=True, kw_only=True):
    inode: InodeProperties = InodeProperties()


class BinaryProperties(Struct, frozen=True, kw_only=True):
    setuid: Id = UNSET  # the euid a setuid exec gave
    setgid: Id = UNSET
    privileges_changed: list[str] | UnsetType = UNSET
    file: FileProperties | UnsetType = UNSET  # a binary with no link: deleted, or a memfd


class User(Struct, frozen=True, kw_only=True):
    name: str = ""


class Cgroup(Struct, frozen=True, kw_only=True):
    id: Wide = 0
    name: str = ""
    path: str = ""
    tracker_id: Wide | UnsetType = UNSET  # older recordings


class Own(Struct, frozen=True, kw_only=True):
    """procscope's fields of a process object, under EXTRA ("procscope"): tetra ignores them."""

    nspid: Id = UNSET
    cgroup: Cgroup | UnsetType = UNSET
    container: dict[str, Any] | UnsetType = UNSET  # runtimes.ContainerInfo's JSON
    previous_exec_id: Text = UNSET  # the image this exec replaced
    argv0: Text = UNSET  # when it names another program than the binary
    # A snapshot's (procscope.snapshot): where the process is, and what it uses.
    state: Text = UNSET  # process.Lifecycle's value
    badges: list[str] | UnsetType = UNSET
    ppid_exec_id: Text = UNSET  # its parent in the tree now (an orphan's reaper)
    usage: dict[str, Any] | UnsetType = UNSET
    exit_time: int | UnsetType = UNSET
    exit_code: int | None | UnsetType = UNSET


class Process(Struct, frozen=True, kw_only=True):
    """A placeholder (a process only named) has its identity and flags "miss" alone."""

    exec_id: str
    pid: U32
    uid: Id = UNSET
    cwd: Text = UNSET
    binary: Text = UNSET
    arguments: Text = UNSET  # joined by spaces, argv[0] left out
    flags: Text = UNSET
    start_time: Text = UNSET
    auid: Id = UNSET
    parent_exec_id: Text = UNSET
    refcnt: int | UnsetType = UNSET
    tid: Id = UNSET
    cap: Capabilities | UnsetType = UNSET
    ns: dict[str, Namespace] | UnsetType = UNSET
    process_credentials: ProcessCredentials | UnsetType = UNSET
    user: User | UnsetType = UNSET
    in_init_tree: bool | UnsetType = UNSET  # absent (older recordings): not known to have come from outside
    binary_properties: BinaryProperties | UnsetType = UNSET
    docker: Text = UNSET  # the container id, as Tetragon cuts it
    pod: dict[str, Any] | UnsetType = UNSET  # a Kubernetes container's (export_parts.pod_object)
    own: Own | UnsetType = msgspec.field(default=UNSET, name=EXTRA)
    # Where older procscope recordings had them, before the "procscope" object.
    nspid: Id = UNSET
    cgroup: Cgroup | UnsetType = UNSET


class CapSets(Struct, frozen=True, kw_only=True):
    bounding: list[str] = []
    ambient: list[str] = []


class CredsSide(Struct, frozen=True, kw_only=True):
    """One side (old, new) of a procscope_creds record."""

    process_credentials: ProcessCredentials = ProcessCredentials()
    ns: dict[str, Namespace] = {}
    cap_sets: CapSets | UnsetType = UNSET  # the sets Tetragon's credentials leave out, when known


# What a process object that lacks a part reads as.
NO_OWN, NO_CGROUP, NO_CAPS = Own(), Cgroup(), Capabilities()
NO_CREDENTIALS, NO_BINARY_PROPERTIES, NO_INODE = ProcessCredentials(), BinaryProperties(), InodeProperties()


def written(obj: object) -> Any:
    """As plain dicts and lists (what the exporter's dict API gives)."""
    return msgspec.to_builtins(obj)
