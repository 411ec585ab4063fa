"""Check up front that this process may load BPF programs."""

from __future__ import annotations

from .errors import SetupError

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def effective_caps(pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_bpf_privileges() -> None:
    caps = effective_caps()
    if caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)):
        return
    raise SetupError(
        "not allowed to load BPF programs (needs root: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): "
        "run procscope as root, e.g. with sudo"
    )
