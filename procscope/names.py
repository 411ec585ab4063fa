"""Names for numbers: capabilities, securebits, users."""

from __future__ import annotations

import functools
import pwd

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

SECUREBITS = (
    "SecBitNoRoot", "SecBitNoRootLocked", "SecBitNoSetUidFixup", "SecBitNoSetUidFixupLocked",
    "SecBitKeepCaps", "SecBitKeepCapsLocked", "SecBitNoCapAmbientRaise", "SecBitNoCapAmbientRaiseLocked",
)  # fmt: skip


# Tetragon's CapabilitiesType enum: the kernel's names, except bit 1, which
# it calls DAC_OVERRIDE. protojson refuses any other spelling.
TETRAGON_CAPABILITIES = tuple("DAC_OVERRIDE" if n == "CAP_DAC_OVERRIDE" else n for n in CAPABILITIES)


def tetragon_cap_names(mask: int) -> list[str]:
    """A capability set as Tetragon's enum names; bits it has no name for
    (none the kernel sets today) are left out, as tetra would drop them."""
    return [TETRAGON_CAPABILITIES[bit] for bit in range(len(TETRAGON_CAPABILITIES)) if mask >> bit & 1]


def cap_name(bit: int) -> str:
    return CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"CAP_{bit}"


def cap_names(mask: int) -> list[str]:
    return [cap_name(bit) for bit in range(64) if mask >> bit & 1]


def securebit_names(bits: int) -> list[str]:
    return [name for i, name in enumerate(SECUREBITS) if bits >> i & 1]


@functools.lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    """The account name, or the number when there is none (as ps does)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
