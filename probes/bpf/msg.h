/* Wire structs between the BPF programs and user space. They mirror
 * Tetragon's processapi (MsgCommon, MsgExecveKey, MsgK8s, MsgGenericCred,
 * MsgNamespaces, MsgProcess, MsgCloneEvent, MsgExitEvent, MsgCgroupEvent). The decoder in
 * probes/wire.py describes the same layouts; probes/collector.py passes the
 * sizes it expects as PS_SIZEOF_* and the static asserts below keep both
 * sides in step. */
#ifndef PROCSCOPE_MSG_H
#define PROCSCOPE_MSG_H

#define MSG_OP_EXECVE 5
#define MSG_OP_EXIT 7
#define MSG_OP_CLONE 23
#define MSG_OP_CGROUP 25
#define MSG_OP_THROTTLE 27
/* procscope's own: a process's credentials or namespaces changed after its exec. */
#define MSG_OP_CREDS 30
/* msg_creds_event.syscall beyond the calls (0-12, probes/wire.py): where a
 * change was seen without --creds-exact. */
#define CREDS_SEEN_CLONE 13
#define CREDS_SEEN_EXEC 14
#define CREDS_SEEN_EXIT 15

/* MsgCgroupEvent.cgrp_op (Tetragon's CgroupOpCode) */
#define MSG_OP_CGROUP_MKDIR 1
#define MSG_OP_CGROUP_RMDIR 2
#define MSG_OP_CGROUP_RELEASE 3
#define MSG_OP_CGROUP_ATTACH_TASK 10

/* MsgCgroupEvent.flags (procscope's own): ATTACH_TASK moved one thread
 * that is not its thread group's leader (a v1 cgroup.tasks write), so the
 * process as /proc/PID/cgroup shows it did not move. */
#define CGROUP_FLAG_THREAD_ONLY 0x01

#define CGROUP_NAME_LENGTH 128
#define CGROUP_PATH_LENGTH 4096

#define DOCKER_ID_LENGTH 128
#define MSG_SIZEOF_ARGS 1024
#define MSG_SIZEOF_CWD 4096
#define BINARY_PATH_MAX 4096
/* argv[0] at most (its bytes; one more for the NUL it is read with). */
#define ARGV0_MAX 256
/* Exec payload: path, args, cwd, argv[0] back to back; power of two so masks bound
 * every write for the verifier. */
#define EXEC_DATA_SIZE 16384

/* MsgProcess.flags (Tetragon's api flags) */
#define EVENT_EXECVE 0x01
#define EVENT_EXECVEAT 0x02
#define EVENT_TRUNC_ARGS 0x10
#define EVENT_ERROR_FILENAME 0x100
#define EVENT_ERROR_ARGS 0x200
#define EVENT_ROOT_CWD 0x1000
#define EVENT_ERROR_CWD 0x2000
#define EVENT_CLONE 0x4000
#define EVENT_ERROR_CGROUPS 0x100000
#define EVENT_ERROR_PATH_RESOLUTION_CWD 0x400000
#define EVENT_IN_INIT_TREE 0x2000000

/* MsgProcess.secureexec: privilege changes of this exec (processapi's
 * Execve* constants) plus the kernel's AT_SECURE decision. */
#define EXECVE_SETUID 0x01
#define EXECVE_SETGID 0x02
#define EXECVE_FILECAPS 0x04
#define EXECVE_SETUID_ROOT 0x08
#define EXECVE_SETGID_ROOT 0x10
#define EXECVE_AT_SECURE 0x100

/* sent_failed columns (SentFailed*) */
#define SENT_FAILED_UNKNOWN 0
#define SENT_FAILED_ENOENT 1
#define SENT_FAILED_E2BIG 2
#define SENT_FAILED_EBUSY 3
#define SENT_FAILED_EINVAL 4
#define SENT_FAILED_ENOSPC 5
#define SENT_FAILED_EAGAIN 6
#define SENT_FAILED_MAX 7

struct msg_common {
	u8 op;
	u8 flags;
	u8 pad[2];
	u32 size;
	u64 ktime;
};

struct msg_execve_key {
	u32 pid;
	u32 pad;
	u64 ktime;
};

struct msg_k8s {
	u64 cgrpid;
	u64 cgrp_tracker_id;
	char docker[DOCKER_ID_LENGTH];
};

struct msg_capabilities {
	u64 permitted;
	u64 effective;
	u64 inheritable;
};

struct msg_user_namespace {
	s32 level;
	u32 uid;
	u32 gid;
	u32 ns_inum;
};

struct msg_generic_cred {
	u32 uid, gid, suid, sgid, euid, egid, fsuid, fsgid;
	u32 securebits;
	u32 pad;
	struct msg_capabilities caps;
	struct msg_user_namespace user_ns;
};

struct msg_namespaces {
	u32 uts_inum, ipc_inum, mnt_inum, pid_inum, pid_child_inum;
	u32 net_inum, time_inum, time_child_inum, cgroup_inum, user_inum;
};

struct msg_process {
	u32 size;
	u32 pid;
	u32 tid;
	u32 nspid;
	u32 secureexec;
	u32 uid;
	u32 auid;
	u32 flags;
	u32 nlink;
	u32 size_argv0; /* procscope's own (Tetragon's pad): argv[0]'s bytes, after the cwd */
	u64 ino;
	u64 ktime;
	u16 size_path;
	u16 size_args;
	u16 size_cwd;
	u16 size_envs;
};

struct msg_execve_event {
	struct msg_common common;
	struct msg_k8s kube;
	struct msg_execve_key parent;
	u64 parent_flags;
	struct msg_generic_cred creds;
	struct msg_namespaces ns;
	struct msg_execve_key cleanup_key;
	struct msg_process process;
	char data[EXEC_DATA_SIZE];
};

struct msg_clone_event {
	struct msg_common common;
	struct msg_execve_key parent;
	u32 pid;
	u32 tid;
	u32 nspid;
	u32 flags;
	u64 ktime;
};

struct msg_exit_event {
	struct msg_common common;
	struct msg_execve_key current;
	u32 code;
	u32 tid;
	/* procscope's own: its threads' CPU time at its exit (0: not read, PS_EXIT_CPU off) */
	u64 cpu_ns;
};

struct msg_cgroup_data {
	s32 state;
	u32 hierarchy_id;
	u32 level;
	u32 pad;
	char name[CGROUP_NAME_LENGTH];
};

/* Sent up to the path's NUL: common.size says how much of path is there. */
struct msg_cgroup_event {
	struct msg_common common;
	struct msg_execve_key parent;
	u32 cgrp_op;
	u32 pid;
	u32 nspid;
	u32 flags;
	u64 ktime;
	u64 cgrpid_tracker;
	u64 cgrpid;
	struct msg_cgroup_data cgrp_data;
	char path[CGROUP_PATH_LENGTH];
};

/* KernelStats.SentFailed[256][SENT_FAILED_MAX], flattened: BCC's Python
 * side sizes a 2-D array leaf wrongly. */
/* Credentials and namespaces as they are after a successful credential or
 * namespace syscall (setuid…, capset, prctl, setns, unshare) that changed
 * them; the same layouts as the exec's. syscall: PS_SYS_* of probes.wire. */
/* The capability sets Tetragon's layout leaves out, now and before the
 * call (before: the exec's or the last message's, when known). */
struct msg_cap_sets {
	u64 bounding;
	u64 ambient;
};

struct msg_creds_event {
	struct msg_common common;
	struct msg_execve_key current;
	u32 tid;
	u32 syscall;
	struct msg_generic_cred creds;
	struct msg_namespaces ns;
	struct msg_cap_sets sets;
	struct msg_cap_sets old_sets;
	u32 old_known; /* old_sets were seen (at the exec, or a message before); else 0 */
	u32 pad;
};

/* A cgroup crossed its rate limit (Tetragon's msg_throttle). */
struct msg_throttle {
	struct msg_common common;
	struct msg_k8s kube;
};

/* Events suppressed by the rate limit, by op. */
#define RATE_EXEC 0
#define RATE_CLONE 1
#define RATE_EXIT 2
#define RATE_OPS 4 /* a power of two: indexes are masked with RATE_OPS - 1 */
struct rate_counts {
	u64 n[RATE_OPS];
};

struct kernel_stats {
	u64 sent_failed[256 * SENT_FAILED_MAX];
};

_Static_assert(sizeof(struct msg_execve_event) - EXEC_DATA_SIZE == PS_SIZEOF_EXECVE_HEADER,
	       "exec header layout differs from probes/wire.py");
_Static_assert(sizeof(struct msg_clone_event) == PS_SIZEOF_CLONE, "clone layout differs from probes/wire.py");
_Static_assert(sizeof(struct msg_exit_event) == PS_SIZEOF_EXIT, "exit layout differs from probes/wire.py");
_Static_assert(sizeof(struct msg_throttle) == PS_SIZEOF_THROTTLE, "throttle layout differs from probes/wire.py");
_Static_assert(sizeof(struct msg_creds_event) == PS_SIZEOF_CREDS, "creds layout differs from probes/wire.py");
_Static_assert(sizeof(struct msg_cgroup_event) - CGROUP_PATH_LENGTH == PS_SIZEOF_CGROUP_HEADER,
	       "cgroup header layout differs from probes/wire.py");
_Static_assert(offsetof(struct msg_cgroup_event, path) == PS_SIZEOF_CGROUP_HEADER,
	       "cgroup path offset differs from probes/wire.py");

#endif
