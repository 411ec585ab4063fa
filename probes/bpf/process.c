/* procscope's process probes: exec, clone and exit, from tracepoints and
 * raw tracepoints only (no kprobes, no fentry).
 *
 * Kernel structs are never dereferenced through the compile headers, which
 * may belong to another kernel: every field is read with
 * bpf_probe_read_kernel at PS_OFF(struct, field), an offset the loader
 * resolved from the running kernel's BTF (probes/offsets.py). */
#include "msg.h"

#define PS_OFF(s, f) PS_OFF_##s##__##f
#define PS_HAS(s, f) PS_HAS_##s##__##f

#define PF_KTHREAD 0x00200000
#define NAME_READ_MAX 256
#define PATH_WALK_MAX 64
#define MAX_PIDS 65536

BPF_RINGBUF_OUTPUT(events, PS_RINGBUF_PAGES);
/* Where a record goes when the main ring refuses it with room to spare (see emit). */
BPF_RINGBUF_OUTPUT(spare, PS_SPARE_PAGES);
BPF_PERCPU_ARRAY(stats, struct kernel_stats, 1);
/* Internal counts: 0 = proc_state map full (a key falls back to the start
 * time, a clone or init-tree mark is lost); 1 = records sent through the
 * spare ring (see emit). */
BPF_PERCPU_ARRAY(probe_errors, u64, 4);
BPF_PERCPU_ARRAY(exec_heap, struct msg_execve_event, 1);

/* What the kernel does not keep for us, per process (tgid) cloned or
 * exec'd while we run, and for the /proc scan's processes in a container's
 * init tree (written by user space): the ktime of its current image (an
 * exec's; a clone's is its start time), whether that image is a clone not
 * yet exec'd (EVENT_CLONE), and whether it is in its container's init tree
 * (EVENT_IN_INIT_TREE). Without an entry a process is keyed by its start
 * time in clock ticks, exactly what the /proc scan computes. A clone's
 * entry also holds its cred and nsproxy as it was cloned: what creds_check
 * compares with until it has an entry of its own in creds_seen. */
struct proc_state {
	u64 ktime;
	u32 flags;
	u32 pad;
	const void *cred;
	const void *nsproxy;
};
BPF_HASH(proc_state, u32, struct proc_state, MAX_PIDS);
/* Per process exec'd while we run, as last sent (at its exec, or a creds
 * record since): a digest of its credentials and namespaces, the capability
 * sets the exec's layout leaves out, and what tells a change cheaply (see
 * creds_check); forgotten at exit. */
struct creds_seen_val {
	u64 digest;
	struct msg_cap_sets sets;
	const void *cred;
	const void *nsproxy;
	u64 cap_effective;
	u32 euid;
	u32 pad;
};
BPF_TABLE("lru_hash", u32, struct creds_seen_val, creds_seen, MAX_PIDS);

#define PROBE_STATE_FULL 0
#define PROBE_SENT_SPARE 1

static __always_inline void count_probe(u32 idx)
{
	u64 *e = probe_errors.lookup(&idx);
	if (e)
		(*e)++;
}

struct pre_exec {
	u32 uid;
	u32 gid;
	u64 permitted;
	u32 execveat;
};
/* Creds before the exec (for its privilege flags), saved when the kernel
 * has computed the new ones but not yet installed them (sched_prepare_exec;
 * before 6.10, at the syscall's entry), keyed by tgid. */
BPF_TABLE("lru_hash", u32, struct pre_exec, pre_exec_creds, 8192);

static __always_inline void *rd_ptr(const void *base, long off)
{
	void *p = 0;
	bpf_probe_read_kernel(&p, sizeof(p), (const char *)base + off);
	return p;
}

static __always_inline u32 rd_u32(const void *base, long off)
{
	u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline u64 rd_u64(const void *base, long off)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline void count_failed(u8 op, long err)
{
	int zero = 0;
	struct kernel_stats *st = stats.lookup(&zero);
	if (!st)
		return;
	u32 idx = SENT_FAILED_UNKNOWN;
	switch (-err) {
	case 2: idx = SENT_FAILED_ENOENT; break;
	case 7: idx = SENT_FAILED_E2BIG; break;
	case 16: idx = SENT_FAILED_EBUSY; break;
	case 22: idx = SENT_FAILED_EINVAL; break;
	case 28: idx = SENT_FAILED_ENOSPC; break;
	case 11: idx = SENT_FAILED_EAGAIN; break;
	}
	st->sent_failed[op * SENT_FAILED_MAX + idx]++;
}

static __always_inline void set_common(struct msg_common *c, u8 op, u32 size, u64 ktime)
{
	c->op = op;
	c->flags = 0;
	c->size = size;
	c->ktime = ktime;
}

/* Records sent on this CPU since it last woke the reader up. */
BPF_PERCPU_ARRAY(unannounced, u32, 1);

/* The one output path: every failure is counted by op and errno. The
 * reader is woken once per PS_WAKEUP_EVERY records per CPU, not for each
 * (the default wakes it whenever it has caught up: in a storm, for almost
 * every record, which costs the kernel a wakeup and the reader a pass);
 * it reads every poll interval anyway, so nothing waits longer than that. */
static __always_inline void emit(void *data, u64 size, u8 op)
{
	int zero = 0;
	u64 flags = BPF_RB_FORCE_WAKEUP;
	u32 *n = unannounced.lookup(&zero);
	if (n) {
		if (++*n < PS_WAKEUP_EVERY)
			flags = BPF_RB_NO_WAKEUP;
		else
			*n = 0;
	}
	long err = events.ringbuf_output(data, size, flags);
	if (err < 0) {
		/* The ring refuses some records with room to spare (-EAGAIN, as
		 * for a full ring), most likely its lock giving up (a resilient
		 * spinlock since 6.16): on this VM a few dozen records in a
		 * 4-minute storm, the ring 99% empty, each refusal within a
		 * microsecond, and a second try at the same ring often refused
		 * too (13 of 38, 58 of 69 in two runs). Another ring (another
		 * lock) takes it; user space reads both. */
		err = spare.ringbuf_output(data, size, flags);
		if (err < 0)
			count_failed(op, err);
		else
			count_probe(PROBE_SENT_SPARE);
	}
}

static __always_inline u64 start_key_ktime(const void *task)
{
	/* /proc/PID/stat's starttime is start_boottime in USER_HZ ticks. */
	const void *leader = rd_ptr(task, PS_OFF(task_struct, group_leader));
	u64 t = rd_u64(leader, PS_OFF(task_struct, start_boottime));
	return (t / PS_TICK_NS) * PS_TICK_NS;
}

static __always_inline u64 key_ktime(u32 tgid, const void *task)
{
	struct proc_state *st = proc_state.lookup(&tgid);
	return st ? st->ktime : start_key_ktime(task);
}

static __always_inline u32 pid_nr_ns(const void *task, u32 *pidns_inum)
{
	const void *pid = rd_ptr(task, PS_OFF(task_struct, thread_pid));
	u32 level = rd_u32(pid, PS_OFF(pid, level));
	const char *upid = (const char *)pid + PS_OFF(pid, numbers) + (u64)level * PS_SIZEOF_UPID;
	if (pidns_inum) {
		const void *ns = rd_ptr(upid, PS_OFF(upid, ns));
		*pidns_inum = rd_u32(ns, PS_OFF(pid_namespace, ns__inum));
	}
	return rd_u32(upid, PS_OFF(upid, nr));
}

static __always_inline int is_kthread(const void *task)
{
	return (rd_u32(task, PS_OFF(task_struct, flags)) & PF_KTHREAD) != 0;
}

/* Walk dentries from a path up to the task's root, crossing mount points,
 * writing the names leaf first, each NUL-terminated, into buf[0..4096).
 * User space reverses the order. The walk state lives in map memory, which
 * the verifier does not track, so the states of every step's branches are
 * equal and pruned: verification cost grows linearly with the bound. */
struct walk {
	const void *dentry;
	const char *vfsmnt;
	const char *mnt;
	u32 len;
	u32 done;
};
BPF_PERCPU_ARRAY(walk_state, struct walk, 1);

static __always_inline u32 walk_path(const void *dentry, const void *vfsmnt, const void *root_dentry,
				     const void *root_mnt, char *buf, int *unresolved)
{
	int zero = 0;
	struct walk *w = walk_state.lookup(&zero);
	if (!w) {
		*unresolved = 1;
		return 0;
	}
	w->dentry = dentry;
	w->vfsmnt = vfsmnt;
	w->mnt = (const char *)vfsmnt - PS_OFF(mount, mnt);
	w->len = 0;
	w->done = 0;
	for (int i = 0; i < PATH_WALK_MAX; i++) {
		const void *d = w->dentry;
		const char *vm = w->vfsmnt;
		if (d == root_dentry && vm == root_mnt) {
			w->done = 1;
			break;
		}
		const void *parent = rd_ptr(d, PS_OFF(dentry, d_parent));
		const void *mnt_root = rd_ptr(vm, PS_OFF(vfsmount, mnt_root));
		if (d == parent && d != mnt_root) {
			/* A pseudo file (memfd, anonymous inode): its own name is the path. */
			u32 len = *(volatile u32 *)&w->len;
			if (len <= 4096 - NAME_READ_MAX) {
				long n = bpf_probe_read_kernel_str(buf + (len & 4095), NAME_READ_MAX,
								   rd_ptr(d, PS_OFF(dentry, d_name__name)));
				if (n > 0)
					*(volatile u32 *)&w->len = len + n;
			}
			w->done = 1;
			break;
		}
		if (d == mnt_root || d == parent) {
			const char *m = w->mnt;
			const char *mnt_parent = rd_ptr(m, PS_OFF(mount, mnt_parent));
			if (mnt_parent == m || !mnt_parent) {
				w->done = 1; /* the global root, or a detached mount */
				break;
			}
			w->dentry = rd_ptr(m, PS_OFF(mount, mnt_mountpoint));
			w->mnt = mnt_parent;
			w->vfsmnt = mnt_parent + PS_OFF(mount, mnt);
			continue;
		}
		u32 len = *(volatile u32 *)&w->len;
		if (len > 4096 - NAME_READ_MAX)
			break; /* too long: unresolved */
		long n = bpf_probe_read_kernel_str(buf + (len & 4095), NAME_READ_MAX,
						   rd_ptr(d, PS_OFF(dentry, d_name__name)));
		if (n <= 0)
			break;
		*(volatile u32 *)&w->len = len + n;
		w->dentry = parent;
	}
	if (!w->done)
		*unresolved = 1;
	return w->len & 4095;
}

static __always_inline void read_creds(const void *task, struct msg_generic_cred *c, struct msg_cap_sets *sets)
{
	const void *cred = rd_ptr(task, PS_OFF(task_struct, cred));
	c->uid = rd_u32(cred, PS_OFF(cred, uid));
	c->gid = rd_u32(cred, PS_OFF(cred, gid));
	c->suid = rd_u32(cred, PS_OFF(cred, suid));
	c->sgid = rd_u32(cred, PS_OFF(cred, sgid));
	c->euid = rd_u32(cred, PS_OFF(cred, euid));
	c->egid = rd_u32(cred, PS_OFF(cred, egid));
	c->fsuid = rd_u32(cred, PS_OFF(cred, fsuid));
	c->fsgid = rd_u32(cred, PS_OFF(cred, fsgid));
	c->securebits = rd_u32(cred, PS_OFF(cred, securebits));
	/* kernel_cap_t is one u64 since 6.3 and u32[2] before: same bytes. */
	c->caps.permitted = rd_u64(cred, PS_OFF(cred, cap_permitted));
	c->caps.effective = rd_u64(cred, PS_OFF(cred, cap_effective));
	c->caps.inheritable = rd_u64(cred, PS_OFF(cred, cap_inheritable));
	sets->ambient = rd_u64(cred, PS_OFF(cred, cap_ambient));
	sets->bounding = rd_u64(cred, PS_OFF(cred, cap_bset));
	const void *uns = rd_ptr(cred, PS_OFF(cred, user_ns));
	c->user_ns.level = rd_u32(uns, PS_OFF(user_namespace, level));
	c->user_ns.uid = rd_u32(uns, PS_OFF(user_namespace, owner));
	c->user_ns.gid = rd_u32(uns, PS_OFF(user_namespace, group));
	c->user_ns.ns_inum = rd_u32(uns, PS_OFF(user_namespace, ns__inum));
}

#define NS_INUM(nsp, member, type) rd_u32(rd_ptr(nsp, PS_OFF(nsproxy, member)), PS_OFF(type, ns__inum))

static __always_inline void read_namespaces(const void *task, struct msg_namespaces *ns, u32 user_inum)
{
	const void *nsp = rd_ptr(task, PS_OFF(task_struct, nsproxy));
	ns->uts_inum = NS_INUM(nsp, uts_ns, uts_namespace);
	ns->ipc_inum = NS_INUM(nsp, ipc_ns, ipc_namespace);
	ns->mnt_inum = NS_INUM(nsp, mnt_ns, mnt_namespace);
	ns->net_inum = NS_INUM(nsp, net_ns, net);
	ns->cgroup_inum = NS_INUM(nsp, cgroup_ns, cgroup_namespace);
	ns->pid_child_inum = NS_INUM(nsp, pid_ns_for_children, pid_namespace);
#if PS_HAS(nsproxy, time_ns)
	ns->time_inum = NS_INUM(nsp, time_ns, time_namespace);
	ns->time_child_inum = NS_INUM(nsp, time_ns_for_children, time_namespace);
#endif
	ns->user_inum = user_inum;
}

/* FNV-1a over the credentials and namespaces (contiguous in both the exec's
 * and the creds message's layout) and the capability sets. */
static __always_inline u64 creds_digest(const struct msg_generic_cred *creds, const struct msg_cap_sets *sets)
{
	const u32 *w = (const u32 *)creds;
	u64 h = 1469598103934665603ULL;
#pragma unroll
	for (int i = 0; i < (sizeof(struct msg_generic_cred) + sizeof(struct msg_namespaces)) / 4; i++)
		h = (h ^ w[i]) * 1099511628211ULL;
	h = (h ^ sets->bounding) * 1099511628211ULL;
	return (h ^ sets->ambient) * 1099511628211ULL;
}

/* The cgroup that identifies a container: the v2 cgroup, or on v1/hybrid
 * machines the cgroup of one v1 controller chosen by the loader. */
static __always_inline const void *tracked_cgroup_kn(const void *task)
{
	const void *cset = rd_ptr(task, PS_OFF(task_struct, cgroups));
#if PS_CGROUP_SUBSYS_IDX < 0
	const void *cgrp = rd_ptr(cset, PS_OFF(css_set, dfl_cgrp));
#else
	const void *css = rd_ptr(cset, PS_OFF(css_set, subsys) + 8 * PS_CGROUP_SUBSYS_IDX);
	const void *cgrp = rd_ptr(css, PS_OFF(cgroup_subsys_state, cgroup));
#endif
	return rd_ptr(cgrp, PS_OFF(cgroup, kn));
}

static __always_inline int read_cgroup(const void *task, struct msg_k8s *k8s)
{
	const void *kn = tracked_cgroup_kn(task);
	if (!kn)
		return -1;
	k8s->cgrpid = rd_u64(kn, PS_OFF(kernfs_node, id));
	k8s->cgrp_tracker_id = k8s->cgrpid;
	const void *name = rd_ptr(kn, PS_OFF(kernfs_node, name));
	if (bpf_probe_read_kernel_str(k8s->docker, sizeof(k8s->docker), name) < 0)
		return -1;
	return 0;
}

/* Per-cgroup rate limit (--cgroup-rate EVENTS,INTERVAL), Tetragon's sliding
 * window: per cgroup and CPU, the events of the current and the previous
 * interval, the previous one weighted by how much of it the window still
 * covers. On the first crossing one THROTTLE message goes out and the
 * cgroup's exec/clone/exit events are suppressed (and counted) until user
 * space, seeing the rate back under the limit, clears `throttled`. */
#if PS_RATE_EVENTS
struct cgroup_rate {
	u64 curr;
	u64 prev;
	u64 time;
	u64 rate;
	u64 throttled; /* when the limit was crossed; 0 = not throttled */
};
BPF_PERCPU_HASH(cgroup_rate_map, u64, struct cgroup_rate, PS_RATE_ENTRIES);
/* Suppressed events per cgroup and op (RATE_EXEC, _CLONE, _EXIT); user
 * space removes a cgroup's entry once it has read it after the rmdir. */
BPF_PERCPU_HASH(cgroup_suppressed, u64, struct rate_counts, PS_RATE_ENTRIES);
BPF_PERCPU_ARRAY(throttle_heap, struct msg_throttle, 1);
#endif
/* Suppressed events per op over all cgroups: exact even when a cgroup's
 * entry is gone or the per-cgroup map is full. */
BPF_PERCPU_ARRAY(suppressed_total, u64, RATE_OPS);

/* Whether the event of the task may go out; false = suppressed and counted. */
static __always_inline int rate_allows(const void *task, u64 now, u32 which)
{
#if PS_RATE_EVENTS
	const void *kn = tracked_cgroup_kn(task);
	if (!kn)
		return 1;
	u64 id = rd_u64(kn, PS_OFF(kernfs_node, id));
	struct cgroup_rate *val = cgroup_rate_map.lookup(&id);
	if (!val) {
		struct cgroup_rate init = { .curr = 1, .time = now / PS_RATE_INTERVAL_NS * PS_RATE_INTERVAL_NS };
		cgroup_rate_map.update(&id, &init);
		return 1;
	}
	u64 delta = now - val->time;
	if (delta > PS_RATE_INTERVAL_NS) {
		if (delta > 2 * PS_RATE_INTERVAL_NS) {
			val->prev = 0;
			val->time = now / PS_RATE_INTERVAL_NS * PS_RATE_INTERVAL_NS;
		} else {
			val->prev = val->curr;
			val->time += PS_RATE_INTERVAL_NS;
		}
		val->curr = 0;
	}
	val->curr++;
	/* In microseconds: slide * prev in ns could overflow 64 bits for long
	 * intervals of busy cgroups. */
	u64 slide_us = (PS_RATE_INTERVAL_NS - (now - val->time)) / 1000;
	val->rate = slide_us * val->prev / (PS_RATE_INTERVAL_NS / 1000) + val->curr;
	if (!val->throttled && val->rate >= PS_RATE_EVENTS) {
		val->throttled = now;
		int zero = 0;
		struct msg_throttle *msg = throttle_heap.lookup(&zero);
		if (msg) {
			__builtin_memset(msg, 0, sizeof(*msg));
			read_cgroup(task, &msg->kube);
			set_common(&msg->common, MSG_OP_THROTTLE, sizeof(*msg), now);
			emit(msg, sizeof(*msg), MSG_OP_THROTTLE);
		}
	}
	if (!val->throttled)
		return 1;
	u32 slot = which & (RATE_OPS - 1); /* a copy: a map key's stack slot loses its bounds */
	u64 *total = suppressed_total.lookup(&slot);
	if (total)
		(*total)++;
	struct rate_counts zeros = {};
	struct rate_counts *n = cgroup_suppressed.lookup_or_try_init(&id, &zeros);
	if (n)
		n->n[which & (RATE_OPS - 1)]++;
	return 0;
#else
	return 1;
#endif
}

/* Credentials and namespaces changed since last sent: a creds record when
 * the task's differ from its process's creds_seen entry (or, for a clone
 * not yet exec'd, from what it was cloned with: st, its proc_state),
 * checked where the process is seen anyway (clone, exec, exit) and, with
 * PS_CREDS_EXACT, at the exit of every syscall that changes them (the exact
 * call and time, at the cost of every syscall of every task taking the
 * kernel's slow path while a syscall tracepoint is on). The kernel replaces
 * a task's struct cred or nsproxy to change it, never writes it in place:
 * the same two pointers (and, against a cred overwritten in place, the same
 * euid and effective set, for an exec'd process) mean nothing changed; a
 * new pointer with the same contents (setuid to the uid it has) costs a
 * digest, no record. A process first seen here (from before the probes) is
 * sent whatever it holds, old_known 0: user space drops it when it matches
 * what it knows, as it does a clone's first change. */
BPF_PERCPU_ARRAY(creds_heap, struct msg_creds_event, 1);

/* cred and nsproxy: the task's, read by a caller that needs them too. */
static __always_inline void creds_check_at(const void *task, const void *cred, const void *nsproxy, u32 tgid,
					   u32 where, const struct proc_state *st)
{
	struct creds_seen_val *seen = creds_seen.lookup(&tgid);
	if (!seen && st && st->cred == cred && st->nsproxy == nsproxy)
		return;
	u32 euid = rd_u32(cred, PS_OFF(cred, euid));
	u64 cap_effective = rd_u64(cred, PS_OFF(cred, cap_effective));
	if (seen && seen->cred == cred && seen->nsproxy == nsproxy && seen->euid == euid &&
	    seen->cap_effective == cap_effective)
		return;
	int zero = 0;
	struct msg_creds_event *ev = creds_heap.lookup(&zero);
	if (!ev)
		return;
	__builtin_memset(ev, 0, sizeof(*ev));
	read_creds(task, &ev->creds, &ev->sets);
	read_namespaces(task, &ev->ns, ev->creds.user_ns.ns_inum);
	pid_nr_ns(task, &ev->ns.pid_inum);
	struct creds_seen_val now = {
		.digest = creds_digest(&ev->creds, &ev->sets),
		.sets = ev->sets,
		.cred = cred,
		.nsproxy = nsproxy,
		.cap_effective = cap_effective,
		.euid = euid,
	};
	u64 old_digest = 0;
	if (seen) {
		old_digest = seen->digest;
		ev->old_sets = seen->sets;
		ev->old_known = 1;
	}
	creds_seen.update(&tgid, &now);
	if (ev->old_known && old_digest == now.digest)
		return;
	set_common(&ev->common, MSG_OP_CREDS, sizeof(*ev), bpf_ktime_get_boot_ns());
	ev->current.pid = tgid;
	ev->current.ktime = st ? st->ktime : start_key_ktime(task);
	ev->tid = rd_u32(task, PS_OFF(task_struct, pid));
	ev->syscall = where;
	emit(ev, sizeof(*ev), MSG_OP_CREDS);
}

static __always_inline void creds_check(const void *task, u32 tgid, u32 where, const struct proc_state *st)
{
	creds_check_at(task, rd_ptr(task, PS_OFF(task_struct, cred)), rd_ptr(task, PS_OFF(task_struct, nsproxy)), tgid,
		       where, st);
}

/* The creds the exec replaces, for its privilege flags and for a change
 * made since they were last seen (a setuid(0) followed by an exec). */
static __always_inline int before_exec(const void *task, u32 execveat)
{
	u32 tgid = rd_u32(task, PS_OFF(task_struct, tgid));
	const void *cred = rd_ptr(task, PS_OFF(task_struct, cred));
	if (PS_TRACE_KTHREADS || !is_kthread(task))
		creds_check_at(task, cred, rd_ptr(task, PS_OFF(task_struct, nsproxy)), tgid, CREDS_SEEN_EXEC,
			       proc_state.lookup(&tgid));
	struct pre_exec pre = {
		.uid = rd_u32(cred, PS_OFF(cred, uid)),
		.gid = rd_u32(cred, PS_OFF(cred, gid)),
		.permitted = rd_u64(cred, PS_OFF(cred, cap_permitted)),
		.execveat = execveat,
	};
	pre_exec_creds.update(&tgid, &pre);
	return 0;
}

#if PS_HAS_PREPARE_EXEC
/* The exec's point of no return: its new creds computed (bprm->cred), the
 * task's still the old. execveat from the syscall's number in its registers. */
RAW_TRACEPOINT_PROBE(sched_prepare_exec)
{
	u32 execveat = 0;
#if PS_NR_EXECVEAT >= 0
	const void *regs = (const void *)bpf_task_pt_regs((struct task_struct *)bpf_get_current_task_btf());
	execveat = rd_u64(regs, PS_OFF_SYSCALL_NR) == PS_NR_EXECVEAT;
#endif
	return before_exec((const void *)ctx->args[0], execveat);
}
#else
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
	return before_exec((const void *)bpf_get_current_task(), 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
	return before_exec((const void *)bpf_get_current_task(), 1);
}
#endif

/* Tetragon's bprm_committing_creds logic, from saved and current creds. */
static __always_inline u32 exec_privileges(const void *bprm, const struct msg_generic_cred *c, u64 ambient,
					   const struct pre_exec *pre)
{
	u32 flags = 0;
	if (!pre || !rd_u32(bprm, PS_OFF(linux_binprm, per_clear)))
		return 0;
	if (c->euid != pre->uid) {
		flags |= EXECVE_SETUID;
		if (c->uid != 0 && c->euid == 0)
			flags |= EXECVE_SETUID_ROOT;
	}
	if (c->egid != pre->gid) {
		flags |= EXECVE_SETGID;
		if (c->gid != 0 && c->egid == 0)
			flags |= EXECVE_SETGID_ROOT;
	}
	if (ambient == 0 && (c->caps.permitted & ~pre->permitted) && c->euid == c->uid)
		flags |= EXECVE_FILECAPS;
	return flags;
}

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
	const void *task = (const void *)ctx->args[0];
	const void *bprm = (const void *)ctx->args[2];
	int zero = 0;
	struct msg_execve_event *ev = exec_heap.lookup(&zero);
	if (!ev)
		return 0;

	u64 now = bpf_ktime_get_boot_ns();
	u32 tgid = rd_u32(task, PS_OFF(task_struct, tgid));
	struct msg_process *p = &ev->process;
	p->pid = tgid;
	p->tid = rd_u32(task, PS_OFF(task_struct, pid));
	p->ktime = now;
	p->flags = EVENT_EXECVE;
	p->secureexec = 0;
	p->size_envs = 0;
	p->size_argv0 = 0;

	/* The previous image of this pid: a clone not yet exec'd makes this
	 * exec "execve clone"; the init-tree mark stays with the process. */
	struct proc_state *prev = proc_state.lookup(&tgid);
	u32 prev_flags = prev ? prev->flags : 0;
	ev->cleanup_key.pid = tgid;
	ev->cleanup_key.pad = 0;
	ev->cleanup_key.ktime = prev ? prev->ktime : start_key_ktime(task);
	p->flags |= prev_flags & EVENT_CLONE;

	const void *rparent = rd_ptr(task, PS_OFF(task_struct, real_parent));
	u32 ptgid = rd_u32(rparent, PS_OFF(task_struct, tgid));
	ev->parent.pid = ptgid;
	ev->parent.pad = 0;
	ev->parent.ktime = key_ktime(ptgid, rparent);
	ev->parent_flags = 0;

	struct creds_seen_val seen = {};
	read_creds(task, &ev->creds, &seen.sets);
	ev->creds.pad = 0;
	p->uid = ev->creds.euid; /* what ps shows */
#if PS_HAS(task_struct, loginuid)
	p->auid = rd_u32(task, PS_OFF(task_struct, loginuid));
#else
	p->auid = 0xffffffff;
#endif
	u32 pidns = 0;
	p->nspid = pid_nr_ns(task, &pidns);
	read_namespaces(task, &ev->ns, ev->creds.user_ns.ns_inum);
	ev->ns.pid_inum = pidns;
	/* What a change after the exec is told apart from (creds_check). */
	seen.digest = creds_digest(&ev->creds, &seen.sets);
	seen.cred = rd_ptr(task, PS_OFF(task_struct, cred));
	seen.nsproxy = rd_ptr(task, PS_OFF(task_struct, nsproxy));
	seen.euid = ev->creds.euid;
	seen.cap_effective = ev->creds.caps.effective;
	creds_seen.update(&tgid, &seen);

	/* A pid namespace's init (global pid 1 is the host's) starts an init tree. */
	u32 in_init = prev_flags & EVENT_IN_INIT_TREE;
	if (p->nspid == 1 && tgid != 1)
		in_init = EVENT_IN_INIT_TREE;
	p->flags |= in_init;
	struct proc_state next = { .ktime = now, .flags = in_init };
	if (proc_state.update(&tgid, &next))
		count_probe(PROBE_STATE_FULL);

	__builtin_memset(&ev->kube, 0, sizeof(ev->kube));
	if (read_cgroup(task, &ev->kube))
		p->flags |= EVENT_ERROR_CGROUPS;

	struct pre_exec *pre = pre_exec_creds.lookup(&tgid);
	if (pre && pre->execveat)
		p->flags = (p->flags & ~EVENT_EXECVE) | EVENT_EXECVEAT;
	p->secureexec = exec_privileges(bprm, &ev->creds, seen.sets.ambient, pre);
	if (pre)
		pre_exec_creds.delete(&tgid);
	if (!rate_allows(task, now, RATE_EXEC))
		return 0;
	u64 bits = rd_u64(bprm, PS_OFF(linux_binprm, secureexec));
	if ((bits >> PS_BIT_linux_binprm__secureexec) & 1)
		p->secureexec |= EXECVE_AT_SECURE;

	/* The binary: full path of bprm->file, its inode and link count. */
	const void *file = rd_ptr(bprm, PS_OFF(linux_binprm, file));
	const void *inode = rd_ptr(file, PS_OFF(file, f_inode));
	p->nlink = rd_u32(inode, PS_OFF(inode, i_nlink));
	p->ino = rd_u64(inode, PS_OFF(inode, i_ino));

	const void *fs = rd_ptr(task, PS_OFF(task_struct, fs));
	const void *root_mnt = rd_ptr(fs, PS_OFF(fs_struct, root) + PS_OFF(path, mnt));
	const void *root_dentry = rd_ptr(fs, PS_OFF(fs_struct, root) + PS_OFF(path, dentry));

	int unresolved = 0;
	const char *fpath = (const char *)file + PS_OFF(file, f_path);
	u32 path_len = walk_path(rd_ptr(fpath, PS_OFF(path, dentry)), rd_ptr(fpath, PS_OFF(path, mnt)),
				 root_dentry, root_mnt, ev->data, &unresolved);
	if (unresolved)
		p->flags |= EVENT_ERROR_FILENAME;
	path_len &= 4095;

	/* Arguments after argv[0], from the new image's memory. */
	const void *mm = rd_ptr(task, PS_OFF(task_struct, mm));
	u64 arg_start = rd_u64(mm, PS_OFF(mm_struct, arg_start));
	u64 arg_end = rd_u64(mm, PS_OFF(mm_struct, arg_end));
	u32 args_len = 0;
	char *args = ev->data + path_len;
	/* argv[0] is read only for its length, into the scratch tail. */
	long n0 = bpf_probe_read_user_str(ev->data + 3 * 4096, 4096, (const void *)arg_start);
	if (n0 > 0 && arg_start + n0 < arg_end) {
		u64 total = arg_end - arg_start - n0;
		u64 want = total;
		if (want > MSG_SIZEOF_ARGS) {
			want = MSG_SIZEOF_ARGS;
			p->flags |= EVENT_TRUNC_ARGS;
		}
		want &= 2047;
		if (want && bpf_probe_read_user(args, want, (const void *)(arg_start + n0)) == 0)
			args_len = want;
		else
			p->flags |= EVENT_ERROR_ARGS;
	} else if (n0 <= 0) {
		p->flags |= EVENT_ERROR_ARGS;
	}
	args_len &= 2047;

	/* Current working directory. */
	unresolved = 0;
	const char *pwd = (const char *)fs + PS_OFF(fs_struct, pwd);
	u32 cwd_len = walk_path(rd_ptr(pwd, PS_OFF(path, dentry)), rd_ptr(pwd, PS_OFF(path, mnt)), root_dentry,
				root_mnt, ev->data + ((path_len + args_len) & 8191), &unresolved);
	if (unresolved)
		p->flags |= EVENT_ERROR_PATH_RESOLUTION_CWD;
	else if (cwd_len == 0)
		p->flags |= EVENT_ROOT_CWD;
	cwd_len &= 4095;

	/* argv[0] as the process set it (busybox's `sleep`, a login shell's
	 * `-bash`), after the cwd: procscope's own (Tetragon's args skip it). */
	u32 argv0_len = 0;
	if (n0 > 1) {
		long a0 = bpf_probe_read_user_str(ev->data + ((path_len + args_len + cwd_len) & 16383), ARGV0_MAX,
						  (const void *)arg_start);
		if (a0 > 1)
			argv0_len = (a0 - 1) & (ARGV0_MAX - 1);
	}

	p->size_path = path_len;
	p->size_args = args_len;
	p->size_cwd = cwd_len;
	p->size_argv0 = argv0_len;
	u32 size = sizeof(*ev) - EXEC_DATA_SIZE +
		   ((path_len + args_len + cwd_len + argv0_len) & (EXEC_DATA_SIZE - 1));
	p->size = size - offsetof(struct msg_execve_event, process);
	set_common(&ev->common, MSG_OP_EXECVE, size, now);
	emit(ev, size, MSG_OP_EXECVE);
	return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
	const void *parent = (const void *)ctx->args[0];
	const void *child = (const void *)ctx->args[1];
	u32 pid = rd_u32(child, PS_OFF(task_struct, pid));
	u32 tgid = rd_u32(child, PS_OFF(task_struct, tgid));
	if (pid != tgid) /* a new thread, not a process */
		return 0;
	if (!PS_TRACE_KTHREADS && is_kthread(child))
		return 0;

	u64 now = bpf_ktime_get_boot_ns();
	struct msg_clone_event ev = {};
	u32 ptgid = rd_u32(parent, PS_OFF(task_struct, tgid));
	set_common(&ev.common, MSG_OP_CLONE, sizeof(ev), now);
	struct proc_state *up = proc_state.lookup(&ptgid);
	ev.parent.pid = ptgid;
	ev.parent.ktime = up ? up->ktime : start_key_ktime(parent);
	ev.pid = tgid;
	ev.tid = pid;
	u32 pidns = 0;
	ev.nspid = pid_nr_ns(child, &pidns);
	ev.flags = EVENT_CLONE;
	ev.ktime = start_key_ktime(child);

	/* In the init tree: a new pid namespace's init, or the child of a
	 * process in the tree that stays in its pid namespace (a process that
	 * entered the namespace from outside, as docker exec's does, is not). */
	if (ev.nspid == 1 && tgid != 1) {
		ev.flags |= EVENT_IN_INIT_TREE;
	} else if (up && (up->flags & EVENT_IN_INIT_TREE)) {
		u32 parent_pidns = 0;
		pid_nr_ns(parent, &parent_pidns);
		if (parent_pidns == pidns)
			ev.flags |= EVENT_IN_INIT_TREE;
	}
	/* The parent's creds as they are now, before its child's record. */
	const void *pcred = rd_ptr(parent, PS_OFF(task_struct, cred));
	const void *pnsproxy = rd_ptr(parent, PS_OFF(task_struct, nsproxy));
	if (PS_TRACE_KTHREADS || !is_kthread(parent))
		creds_check_at(parent, pcred, pnsproxy, ptgid, CREDS_SEEN_CLONE, up);
	struct proc_state st = {
		.ktime = ev.ktime,
		.flags = ev.flags,
		.cred = rd_ptr(child, PS_OFF(task_struct, cred)),
		.nsproxy = rd_ptr(child, PS_OFF(task_struct, nsproxy)),
	};
	if (proc_state.update(&tgid, &st))
		count_probe(PROBE_STATE_FULL);
	if (!rate_allows(child, now, RATE_CLONE))
		return 0;
	emit(&ev, sizeof(ev), MSG_OP_CLONE);
	/* Cloned into namespaces (or a user namespace) of its own: told at
	 * once. (A child's cred is a copy of its parent's, its nsproxy shared
	 * unless it has namespaces of its own.) */
	if (st.nsproxy != pnsproxy || rd_ptr(st.cred, PS_OFF(cred, user_ns)) != rd_ptr(pcred, PS_OFF(cred, user_ns)))
		creds_check_at(child, st.cred, st.nsproxy, tgid, CREDS_SEEN_CLONE, 0);
	return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_exit)
{
	const void *task = (const void *)ctx->args[0];
#if PS_EXIT_HAS_GROUP_DEAD
	if (!(u8)ctx->args[1])
		return 0;
#else
	const void *sig = rd_ptr(task, PS_OFF(task_struct, signal));
	if (rd_u32(sig, PS_OFF(signal_struct, live)) != 0)
		return 0;
#endif
	if (!PS_TRACE_KTHREADS && is_kthread(task))
		return 0;

	struct msg_exit_event ev = {};
	u32 tgid = rd_u32(task, PS_OFF(task_struct, tgid));
	set_common(&ev.common, MSG_OP_EXIT, sizeof(ev), bpf_ktime_get_boot_ns());
	ev.current.pid = tgid;
	struct proc_state *st = proc_state.lookup(&tgid);
	ev.current.ktime = st ? st->ktime : start_key_ktime(task);
	creds_check(task, tgid, CREDS_SEEN_EXIT, st);
	proc_state.delete(&tgid);
	creds_seen.delete(&tgid);
	if (!rate_allows(task, ev.common.ktime, RATE_EXIT))
		return 0;
	ev.code = rd_u32(task, PS_OFF(task_struct, exit_code));
	ev.tid = rd_u32(task, PS_OFF(task_struct, pid));
#if PS_EXIT_CPU
	/* The threads released so far, and this last one's up to its last
	 * scheduler update: what the exit itself does after this (unmapping
	 * its memory) is not in it, nor, when it ran to the end, the time
	 * since (about 3% of what 10 ms processes use, measured here against
	 * their cgroup). Exact would mean a record when the kernel frees it
	 * (sched_process_free), tried: it cost an exec storm 6-10% of its rate
	 * on two cores, mostly in user space reading a fourth record per process. */
	const void *sig = rd_ptr(task, PS_OFF(task_struct, signal));
	ev.cpu_ns = rd_u64(sig, PS_OFF(signal_struct, sum_sched_runtime)) +
		    rd_u64(task, PS_OFF(task_struct, se__sum_exec_runtime));
#endif
	emit(&ev, sizeof(ev), MSG_OP_EXIT);
	return 0;
}

/* Cgroup events, from the cgroup raw tracepoints: (struct cgroup *, const
 * char *path) and for attach_task also (struct task_struct *, bool
 * threadgroup). The kernel formats path (relative to the hierarchy's root,
 * at most 1024 bytes) only while a probe is attached. Every hierarchy is
 * reported, v1 and v2; the hierarchy id tells them apart. */
BPF_PERCPU_ARRAY(cgroup_heap, struct msg_cgroup_event, 1);

static __always_inline int emit_cgroup(u32 cgrp_op, const void *cgrp, const char *path, const void *task)
{
	int zero = 0;
	struct msg_cgroup_event *ev = cgroup_heap.lookup(&zero);
	if (!ev)
		return 0;
	u64 now = bpf_ktime_get_boot_ns();
	if (!task)
		task = (const void *)bpf_get_current_task();
	u32 tgid = rd_u32(task, PS_OFF(task_struct, tgid));
	u32 tid = rd_u32(task, PS_OFF(task_struct, pid));
	__builtin_memset(&ev->parent, 0, sizeof(ev->parent));
	ev->cgrp_op = cgrp_op;
	ev->pid = tgid;
	ev->nspid = pid_nr_ns(task, 0);
	ev->flags = (cgrp_op == MSG_OP_CGROUP_ATTACH_TASK && tid != tgid) ? CGROUP_FLAG_THREAD_ONLY : 0;
	ev->ktime = now;
	const void *kn = rd_ptr(cgrp, PS_OFF(cgroup, kn));
	ev->cgrpid = kn ? rd_u64(kn, PS_OFF(kernfs_node, id)) : 0;
	ev->cgrpid_tracker = ev->cgrpid;
	ev->cgrp_data.state = 0;
	ev->cgrp_data.pad = 0;
	ev->cgrp_data.level = rd_u32(cgrp, PS_OFF(cgroup, level));
	const void *root = rd_ptr(cgrp, PS_OFF(cgroup, root));
	ev->cgrp_data.hierarchy_id = root ? rd_u32(root, PS_OFF(cgroup_root, hierarchy_id)) : 0;
	ev->cgrp_data.name[0] = 0;
	if (kn && bpf_probe_read_kernel_str(ev->cgrp_data.name, sizeof(ev->cgrp_data.name),
					    rd_ptr(kn, PS_OFF(kernfs_node, name))) < 0)
		ev->cgrp_data.name[0] = 0;
	long n = bpf_probe_read_kernel_str(ev->path, CGROUP_PATH_LENGTH, path);
	if (n <= 0) {
		ev->path[0] = 0;
		n = 1;
	}
	/* n is 1..CGROUP_PATH_LENGTH with the NUL: masked for the verifier. */
	u32 size = offsetof(struct msg_cgroup_event, path) + (((u32)n - 1) & (CGROUP_PATH_LENGTH - 1)) + 1;
	set_common(&ev->common, MSG_OP_CGROUP, size, now);
	emit(ev, size, MSG_OP_CGROUP);
	return 0;
}

RAW_TRACEPOINT_PROBE(cgroup_mkdir)
{
	return emit_cgroup(MSG_OP_CGROUP_MKDIR, (const void *)ctx->args[0], (const char *)ctx->args[1], 0);
}

RAW_TRACEPOINT_PROBE(cgroup_rmdir)
{
#if PS_RATE_EVENTS
	/* The cgroup's rate state goes with it (its suppressed counts stay
	 * until user space has read them). */
	const void *cgrp = (const void *)ctx->args[0];
	const void *root = rd_ptr(cgrp, PS_OFF(cgroup, root));
	const void *kn = rd_ptr(cgrp, PS_OFF(cgroup, kn));
	if (kn && root && rd_u32(root, PS_OFF(cgroup_root, hierarchy_id)) == PS_CGROUP_HIERARCHY_ID) {
		u64 id = rd_u64(kn, PS_OFF(kernfs_node, id));
		cgroup_rate_map.delete(&id);
	}
#endif
	return emit_cgroup(MSG_OP_CGROUP_RMDIR, (const void *)ctx->args[0], (const char *)ctx->args[1], 0);
}

RAW_TRACEPOINT_PROBE(cgroup_release)
{
	return emit_cgroup(MSG_OP_CGROUP_RELEASE, (const void *)ctx->args[0], (const char *)ctx->args[1], 0);
}

RAW_TRACEPOINT_PROBE(cgroup_attach_task)
{
	return emit_cgroup(MSG_OP_CGROUP_ATTACH_TASK, (const void *)ctx->args[0], (const char *)ctx->args[1],
			   (const void *)ctx->args[2]);
}

#if PS_CREDS_EXACT
/* --creds-exact: a change told at the exit of the call that made it. */
static __always_inline int creds_changed(long ret, u32 syscall)
{
	if (ret < 0)
		return 0;
	const void *task = (const void *)bpf_get_current_task();
	if (!PS_TRACE_KTHREADS && is_kthread(task))
		return 0;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	creds_check(task, tgid, syscall, proc_state.lookup(&tgid));
	return 0;
}

/* setfsuid and setfsgid return the previous id, never an error. */
TRACEPOINT_PROBE(syscalls, sys_exit_setuid) { return creds_changed(args->ret, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_setgid) { return creds_changed(args->ret, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_setreuid) { return creds_changed(args->ret, 2); }
TRACEPOINT_PROBE(syscalls, sys_exit_setregid) { return creds_changed(args->ret, 3); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresuid) { return creds_changed(args->ret, 4); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresgid) { return creds_changed(args->ret, 5); }
TRACEPOINT_PROBE(syscalls, sys_exit_setfsuid) { return creds_changed(0, 6); }
TRACEPOINT_PROBE(syscalls, sys_exit_setfsgid) { return creds_changed(0, 7); }
TRACEPOINT_PROBE(syscalls, sys_exit_setgroups) { return creds_changed(args->ret, 8); }
TRACEPOINT_PROBE(syscalls, sys_exit_capset) { return creds_changed(args->ret, 9); }
TRACEPOINT_PROBE(syscalls, sys_exit_prctl) { return creds_changed(args->ret, 10); }
TRACEPOINT_PROBE(syscalls, sys_exit_setns) { return creds_changed(args->ret, 11); }
TRACEPOINT_PROBE(syscalls, sys_exit_unshare) { return creds_changed(args->ret, 12); }
#endif
