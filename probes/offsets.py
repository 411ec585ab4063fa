"""Every kernel-struct field the BPF programs read, resolved against the
running kernel's BTF into ``-D`` compiler flags (``PS_OFF_<struct>__<path>``,
with ``.`` in a member path spelled ``__``)."""

from __future__ import annotations

import platform

from .btf import BTF, BTFError

# (struct, member path) read by probes/bpf/process.c
FIELDS: tuple[tuple[str, str], ...] = (
    ("task_struct", "pid"),
    ("task_struct", "tgid"),
    ("task_struct", "flags"),
    ("task_struct", "real_parent"),
    ("task_struct", "group_leader"),
    ("task_struct", "start_boottime"),
    ("task_struct", "exit_code"),
    ("task_struct", "signal"),
    ("task_struct", "cred"),
    ("task_struct", "nsproxy"),
    ("task_struct", "thread_pid"),
    ("task_struct", "fs"),
    ("task_struct", "mm"),
    ("task_struct", "cgroups"),
    ("task_struct", "se.sum_exec_runtime"),
    ("signal_struct", "live"),
    ("signal_struct", "sum_sched_runtime"),
    ("cred", "uid"),
    ("cred", "gid"),
    ("cred", "suid"),
    ("cred", "sgid"),
    ("cred", "euid"),
    ("cred", "egid"),
    ("cred", "fsuid"),
    ("cred", "fsgid"),
    ("cred", "securebits"),
    ("cred", "cap_inheritable"),
    ("cred", "cap_permitted"),
    ("cred", "cap_effective"),
    ("cred", "cap_ambient"),
    ("cred", "cap_bset"),
    ("cred", "user_ns"),
    ("user_namespace", "level"),
    ("user_namespace", "owner"),
    ("user_namespace", "group"),
    ("user_namespace", "ns.inum"),
    ("nsproxy", "uts_ns"),
    ("nsproxy", "ipc_ns"),
    ("nsproxy", "mnt_ns"),
    ("nsproxy", "pid_ns_for_children"),
    ("nsproxy", "net_ns"),
    ("nsproxy", "cgroup_ns"),
    ("uts_namespace", "ns.inum"),
    ("ipc_namespace", "ns.inum"),
    ("mnt_namespace", "ns.inum"),
    ("pid_namespace", "ns.inum"),
    ("net", "ns.inum"),
    ("cgroup_namespace", "ns.inum"),
    ("pid", "level"),
    ("pid", "numbers"),
    ("upid", "nr"),
    ("upid", "ns"),
    ("fs_struct", "root"),
    ("fs_struct", "pwd"),
    ("path", "mnt"),
    ("path", "dentry"),
    ("dentry", "d_parent"),
    ("dentry", "d_name.name"),
    ("vfsmount", "mnt_root"),
    ("mount", "mnt"),
    ("mount", "mnt_parent"),
    ("mount", "mnt_mountpoint"),
    ("mm_struct", "arg_start"),
    ("mm_struct", "arg_end"),
    ("linux_binprm", "file"),
    ("linux_binprm", "per_clear"),
    ("linux_binprm", "secureexec"),
    ("file", "f_inode"),
    ("file", "f_path"),
    ("inode", "i_nlink"),
    ("inode", "i_ino"),
    ("css_set", "dfl_cgrp"),
    ("css_set", "subsys"),
    ("cgroup_subsys_state", "cgroup"),
    ("cgroup", "kn"),
    ("cgroup", "level"),
    ("cgroup", "root"),
    ("cgroup_root", "hierarchy_id"),
    ("kernfs_node", "id"),
    ("kernfs_node", "name"),
)

# Config-dependent fields: PS_HAS_<...> says whether the kernel has them.
OPTIONAL: tuple[tuple[str, str], ...] = (
    ("task_struct", "loginuid"),  # CONFIG_AUDIT
    ("nsproxy", "time_ns"),  # CONFIG_TIME_NS
    ("nsproxy", "time_ns_for_children"),
    ("time_namespace", "ns.inum"),
)

# Where x86-64 saves a task's syscall number, and execveat's: the exec's
# flags tell execveat from execve by it at sched_prepare_exec (elsewhere,
# every exec there is execve).
SYSCALL_NR = ("pt_regs", "orig_ax")
NR_EXECVEAT = {"x86_64": 322}

# Preferred v1 controllers for container identity on v1/hybrid machines.
V1_CONTROLLERS = ("memory", "pids", "cpuset")


def _macro(struct_name: str, path: str) -> str:
    return f"{struct_name}__{path.replace('.', '__')}"


def compile_flags(btf: BTF, cgroup_controller: str | None) -> list[str]:
    """-D flags for every field; raises BTFError naming the first field the
    kernel lacks. ``cgroup_controller`` None means the cgroup v2 hierarchy."""
    flags = []
    for struct_name, path in FIELDS + OPTIONAL:
        name = _macro(struct_name, path)
        try:
            m = btf.member(struct_name, path)
        except BTFError:
            if (struct_name, path) in OPTIONAL:
                flags += [f"-DPS_HAS_{name}=0", f"-DPS_OFF_{name}=0"]
                continue
            raise
        flags += [f"-DPS_HAS_{name}=1", f"-DPS_OFF_{name}={m.offset}"]
        if m.bit_size:
            flags.append(f"-DPS_BIT_{name}={m.bit_offset}")
    flags.append(f"-DPS_SIZEOF_UPID={btf.sizeof('upid')}")
    if cgroup_controller is None:
        flags.append("-DPS_CGROUP_SUBSYS_IDX=-1")
    else:
        flags.append(f"-DPS_CGROUP_SUBSYS_IDX={btf.enum_value('cgroup_subsys_id', f'{cgroup_controller}_cgrp_id')}")
    # Since 6.16 sched_process_exit passes group_dead; before, read signal->live.
    flags.append(f"-DPS_EXIT_HAS_GROUP_DEAD={int(btf.tracepoint_arity('sched_process_exit') >= 2)}")
    # Since 6.10 sched_prepare_exec sees an exec's old creds; before, the
    # execve and execveat syscalls' entry (a syscall tracepoint) does.
    flags.append(f"-DPS_HAS_PREPARE_EXEC={int(btf.has_tracepoint('sched_prepare_exec'))}")
    execveat, nr_at = NR_EXECVEAT.get(platform.machine(), -1), 0
    try:
        nr_at = btf.member(*SYSCALL_NR).offset
    except BTFError:
        execveat = -1
    flags += [f"-DPS_NR_EXECVEAT={execveat}", f"-DPS_OFF_SYSCALL_NR={nr_at}"]
    return flags
