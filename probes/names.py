"""Numbers → words, one table each, used alike by the decoder, the model,
the exporters, replay and the monitor: process flags, the privileges an
exec raised (Tetragon's words and procscope's badges), capabilities,
securebits and signals. Each table is read both ways."""

from __future__ import annotations

import functools
import signal as _signal

from . import wire

# MsgProcess.flags → Tetragon's flag words (pkg/api flags and their strings,
# in Tetragon's order; internal flags such as needsCWD have no word).
PROCESS_FLAGS = {
    0x01: "execve",
    0x02: "execveat",
    0x04: "procFS",
    0x08: "truncFilename",
    0x10: "truncArgs",
    0x20: "taskWalk",
    0x40: "miss",
    0x80: "auid",
    0x100: "errorFilename",
    0x200: "errorArgs",
    0x800: "nocwd",
    0x1000: "rootcwd",
    0x2000: "errorCWD",
    0x4000: "clone",
    0x10000: "errorCgroupName",
    0x200000: "errorCgroupID",
    0x20000: "errorCgroupKn",
    0x40000: "errorCgroupSubsysCgrp",
    0x80000: "errorCgroupSubsys",
    0x100000: "errorCgroups",
    0x400000: "errorPathResolutionCwd",
    0x800000: "dataFilename",
    0x1000000: "dataArgs",
    0x2000000: "inInitTree",
}
_FLAG_BITS = {word: bit for bit, word in PROCESS_FLAGS.items()}


def flag_words(flags: int) -> list[str]:
    return [word for bit, word in PROCESS_FLAGS.items() if flags & bit]


@functools.lru_cache(maxsize=256)
def flag_text(flags: int) -> str:
    """The flag words as Tetragon writes them: space-separated (few distinct values, one per export)."""
    return " ".join(flag_words(flags))


def flag_bits(words: str) -> int:
    """Space-separated flag words (as Tetragon writes them) → bits; unknown words are ignored."""
    return sum(_FLAG_BITS.get(w, 0) for w in words.split())


# The privileges an exec raised (MsgProcess.secureexec bits): Tetragon's
# ProcessPrivilegesChanged word (it has words for file capabilities and for
# setuid/setgid to root only), and procscope's badge.
PRIVILEGES = (
    # bit, Tetragon's word, badge
    (wire.EXECVE_SETUID, None, "setuid"),
    (wire.EXECVE_SETGID, None, "setgid"),
    (wire.EXECVE_FILECAPS, "PRIVILEGES_RAISED_EXEC_FILE_CAP", "filecaps"),
    (wire.EXECVE_SETUID_ROOT, "PRIVILEGES_RAISED_EXEC_FILE_SETUID", None),
    (wire.EXECVE_SETGID_ROOT, "PRIVILEGES_RAISED_EXEC_FILE_SETGID", None),
)
# Raising a root id implies the id change itself.
_RAISED_BITS = {
    "PRIVILEGES_RAISED_EXEC_FILE_CAP": wire.EXECVE_FILECAPS,
    "PRIVILEGES_RAISED_EXEC_FILE_SETUID": wire.EXECVE_SETUID | wire.EXECVE_SETUID_ROOT,
    "PRIVILEGES_RAISED_EXEC_FILE_SETGID": wire.EXECVE_SETGID | wire.EXECVE_SETGID_ROOT,
}


def raised_words(privileges: int) -> list[str]:
    return [word for bit, word, _ in PRIVILEGES if word and privileges & bit]


def raised_bits(words: list[str]) -> int:
    return sum(_RAISED_BITS.get(w, 0) for w in words)


def privilege_badges(privileges: int) -> list[str]:
    return [badge for bit, _, badge in PRIVILEGES if badge and privileges & bit]


CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
ALL_CAPS = (1 << len(CAPABILITIES)) - 1  # a full bounding set: every capability the kernel names
# Tetragon's CapabilitiesType enum: the kernel's names, except bit 1, which
# it calls DAC_OVERRIDE. protojson refuses any other spelling.
TETRAGON_CAPABILITIES = tuple("DAC_OVERRIDE" if n == "CAP_DAC_OVERRIDE" else n for n in CAPABILITIES)
_CAP_BITS = {name: i for names in (CAPABILITIES, TETRAGON_CAPABILITIES) for i, name in enumerate(names)}


def cap_names(mask: int) -> list[str]:
    """A capability set as the kernel names it (CAP_41 for a bit without a name)."""
    return [CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"CAP_{bit}" for bit in range(64) if mask >> bit & 1]


def tetragon_cap_names(mask: int) -> list[str]:
    """A capability set as Tetragon's enum names; bits it has no name for
    (none the kernel sets today) are left out, as tetra would drop them."""
    return [TETRAGON_CAPABILITIES[bit] for bit in range(len(TETRAGON_CAPABILITIES)) if mask >> bit & 1]


def cap_bit(name: str) -> int | None:
    """CAP_SYS_ADMIN, SYS_ADMIN, sys_admin or DAC_OVERRIDE → its bit; None if unknown."""
    name = name.upper()
    return _CAP_BITS.get(name, _CAP_BITS.get("CAP_" + name.removeprefix("CAP_")))


def cap_mask(names: list[str]) -> int:
    return sum(1 << bit for n in names if (bit := cap_bit(n)) is not None)


SECUREBITS = (
    "SecBitNoRoot", "SecBitNoRootLocked", "SecBitNoSetUidFixup", "SecBitNoSetUidFixupLocked",
    "SecBitKeepCaps", "SecBitKeepCapsLocked", "SecBitNoCapAmbientRaise", "SecBitNoCapAmbientRaiseLocked",
)  # fmt: skip
_SECUREBIT_BITS = {name: i for i, name in enumerate(SECUREBITS)}


def securebit_names(bits: int) -> list[str]:
    return [name for i, name in enumerate(SECUREBITS) if bits >> i & 1]


def securebit_mask(names: list[str]) -> int:
    return sum(1 << _SECUREBIT_BITS[n] for n in names if n in _SECUREBIT_BITS)


def signal_name(number: int) -> str:
    """SIGKILL; SIG64 for a signal without a name; "" for none."""
    if not number:
        return ""
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def signal_number(name: str) -> int:
    if not name:
        return 0
    try:
        return _signal.Signals[name].value
    except KeyError:  # "SIG64", as signal_name writes a signal without a name
        return int(name[3:]) if name[3:].isdigit() else 0
