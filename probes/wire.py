"""Layouts and constants of the messages the BPF programs send
(probes/bpf/msg.h), after Tetragon's processapi."""

from __future__ import annotations

import struct

# Message ops (Tetragon's msg_types.h)
OP_EXECVE = 5
OP_EXIT = 7
OP_CLONE = 23
OP_CGROUP = 25
OP_THROTTLE = 27
OP_CREDS = 30  # procscope's own: credentials or namespaces changed after exec
# MsgCgroupEvent.cgrp_op (Tetragon's CgroupOpCode)
CGROUP_MKDIR = 1
CGROUP_RMDIR = 2
CGROUP_RELEASE = 3
CGROUP_ATTACH_TASK = 10
CGROUP_OP_NAMES = {
    CGROUP_MKDIR: "MKDIR",
    CGROUP_RMDIR: "RMDIR",
    CGROUP_RELEASE: "RELEASE",
    CGROUP_ATTACH_TASK: "ATTACH_TASK",
}
# MsgCgroupEvent.flags (procscope's own): ATTACH_TASK moved one thread, not
# its thread group's leader, so the process did not move.
CGROUP_FLAG_THREAD_ONLY = 0x01
CGROUP_NAME_LENGTH = 128
CGROUP_PATH_LENGTH = 4096
OP_NAMES = {OP_EXECVE: "EXECVE", OP_EXIT: "EXIT", OP_CLONE: "CLONE", OP_CGROUP: "CGROUP", OP_THROTTLE: "THROTTLE",
            OP_CREDS: "CREDS"}  # fmt: skip
# msg_creds_event.syscall: which call changed them (the BPF side's numbering;
# the calls only with --creds-exact), or where the change was seen
CREDS_SYSCALLS = ("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
                  "setgroups", "capset", "prctl", "setns", "unshare",
                  "seen at clone", "seen at exec", "seen at exit")  # fmt: skip

# sent_failed columns, in processapi's SentFailed* order
SENT_FAILED_NAMES = ("unknown", "ENOENT", "E2BIG", "EBUSY", "EINVAL", "ENOSPC", "EAGAIN")

# MsgProcess.flags (their words: names.PROCESS_FLAGS)
FLAG_EXECVE = 0x01
FLAG_EXECVEAT = 0x02
FLAG_PROCFS = 0x04
FLAG_TRUNC_ARGS = 0x10
FLAG_MISS = 0x40
FLAG_ERROR_FILENAME = 0x100
FLAG_ERROR_ARGS = 0x200
FLAG_ROOT_CWD = 0x1000
FLAG_ERROR_CWD = 0x2000
FLAG_CLONE = 0x4000
FLAG_ERROR_PATH_RESOLUTION_CWD = 0x400000
# In its container's init tree: a pid namespace's init (not the host's), or
# cloned, in the same pid namespace, by a process in that tree.
FLAG_IN_INIT_TREE = 0x2000000

# MsgProcess.secureexec: processapi's Execve* privilege bits, plus AT_SECURE
EXECVE_SETUID = 0x01
EXECVE_SETGID = 0x02
EXECVE_FILECAPS = 0x04
EXECVE_SETUID_ROOT = 0x08
EXECVE_SETGID_ROOT = 0x10
EXECVE_AT_SECURE = 0x100

# (uid_t)-1: no such id. An auid never set (Tetragon writes it as is), or an
# owner the /proc scan cannot learn (left out of the export).
UNKNOWN_ID = 0xFFFFFFFF

MSG_SIZEOF_ARGS = 1024
DOCKER_ID_LENGTH = 128

# MsgCommon | MsgK8s | parent MsgExecveKey | parent_flags | MsgGenericCred |
# MsgNamespaces | cleanup MsgExecveKey | MsgProcess, then path, args, cwd and
# (procscope's own) argv[0].
EXECVE_HEADER = struct.Struct(
    "<BBxxIQ"  # common: op, flags, size, ktime
    "QQ128s"  # k8s: cgrpid, tracker id, docker
    "I4xQ"  # parent key
    "Q"  # parent flags
    "9I4xQQQiIII"  # creds: 8 ids, securebits, pad, caps, user ns
    "10I"  # namespaces
    "I4xQ"  # cleanup key
    "10IQQ4H"  # process: size..nlink, size_argv0 (Tetragon's pad), ino, ktime, sizes
)
# The same header in parts, for the decoder: most execs share their
# credentials, namespaces and cgroup name with others, so those are decoded
# once per distinct value, keyed by their bytes (which the rest skips).
EXECVE_NAME = slice(32, 160)  # MsgK8s.docker
EXECVE_CREDS_AT, EXECVE_CREDS = 184, struct.Struct("<9I4xQQQiIII")
EXECVE_NS_AT, EXECVE_NS = 264, struct.Struct("<10I")
EXECVE_REST = struct.Struct("<BBxxIQ" "QQ128x" "I4xQ" "8x" f"{EXECVE_CREDS.size}x" f"{EXECVE_NS.size}x" "I4xQ" "10IQQ4H")  # fmt: skip
CLONE = struct.Struct("<BBxxIQ" "I4xQ" "IIII" "Q")  # fmt: skip
EXIT = struct.Struct("<BBxxIQ" "I4xQ" "IIQ")  # fmt: skip
# MsgCommon | MsgExecveKey | tid, syscall | MsgGenericCred | MsgNamespaces | bounding, ambient now and
# before | old_known
CREDS = struct.Struct("<BBxxIQ" "I4xQ" "II" f"{EXECVE_CREDS.size}s" f"{EXECVE_NS.size}s" "QQQQI4x")  # fmt: skip
# MsgCgroupEvent up to its path, which follows (up to CGROUP_PATH_LENGTH
# bytes, NUL-terminated; the record ends after the NUL).
CGROUP_HEADER = struct.Struct(
    "<BBxxIQ"  # common
    "I4xQ"  # parent key
    "IIII"  # cgrp_op, pid, nspid, flags
    "QQQ"  # ktime, cgrpid_tracker, cgrpid
    "iII4x128s"  # MsgCgroupData: state, hierarchy_id, level, pad, name
)

# MsgThrottleEvent: MsgCommon | MsgK8s of the cgroup that crossed its rate limit.
THROTTLE = struct.Struct("<BBxxIQ" "QQ128s")  # fmt: skip
# ThrottleType (Tetragon's tetragon.ThrottleType)
THROTTLE_START = 1
THROTTLE_STOP = 2
THROTTLE_NAMES = {THROTTLE_START: "THROTTLE_START", THROTTLE_STOP: "THROTTLE_STOP"}
# Ops the rate limit suppresses, in the order of the BPF side's counters.
RATE_OPS = ("exec", "clone", "exit")

assert EXECVE_HEADER.size == 384 and CLONE.size == 56 and EXIT.size == 48 and CGROUP_HEADER.size == 216
assert CREDS.size == 200
assert THROTTLE.size == 160
assert struct.calcsize("<BBxxIQQQ") == EXECVE_NAME.start and EXECVE_NAME.stop - EXECVE_NAME.start == DOCKER_ID_LENGTH
assert struct.calcsize("<BBxxIQQQ128sI4xQQ") == EXECVE_CREDS_AT and EXECVE_CREDS_AT + EXECVE_CREDS.size == EXECVE_NS_AT
assert EXECVE_REST.size == EXECVE_HEADER.size


def compile_flags() -> list[str]:
    """Sizes the C side asserts against, so a layout change on one side
    fails the build rather than garbling events."""
    return [
        f"-DPS_SIZEOF_EXECVE_HEADER={EXECVE_HEADER.size}",
        f"-DPS_SIZEOF_CLONE={CLONE.size}",
        f"-DPS_SIZEOF_EXIT={EXIT.size}",
        f"-DPS_SIZEOF_CGROUP_HEADER={CGROUP_HEADER.size}",
        f"-DPS_SIZEOF_THROTTLE={THROTTLE.size}",
        f"-DPS_SIZEOF_CREDS={CREDS.size}",
    ]
