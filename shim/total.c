/*
 * total.c - the process's live bytes and their exact peak, without a cache
 * line that every thread writes on every allocation and free.
 *
 * The total T moves on every recorded allocation (+bytes) and release
 * (-bytes); the peak is the largest T ever reached, and a snapshot also
 * wants the largest since the previous snapshot (P below; the all-time peak
 * is raised with it).  One shared counter gives both exactly, but every
 * thread then writes its cache line: on two cores that line's round trips
 * were an eighth of a churning program's time.
 *
 * Leases.  One shared word W holds a mode and S; per-CPU slots hold
 * headroom, each in a cache line of its own:
 *
 *    T = S - (headroom in the slots)      always;
 *    S <= P                               in lease mode, but for the
 *                                         allocations that broke it, each
 *                                         of which then settles.
 *
 * In lease mode a release adds its bytes to its CPU's slot and an
 * allocation takes them from it: T moves, S does not, nothing is shared.
 * T <= S <= P, so no new peak can pass unseen.  An operation the slot cannot
 * take (the slot is empty, or would hold 64 KiB or more) adds to S itself
 * (one atomic add on W); an allocation that takes S past P settles the
 * total: under the lock it closes the leases (mode REVOKING; membarrier's
 * rseq command makes every CPU abort a slot update in flight, so the slots
 * are still after it), moves the slots' headroom out of S, and has T
 * exactly, which is the allocation's new total: a new peak, or not.  Every
 * operation that ran meanwhile is concurrent with that allocation, so
 * ordering the allocation last is a true account of the program.
 *
 * Direct mode: no slot is valid and every operation is an atomic add on W,
 * whose result is T (the peak is raised from it).  The total is in this
 * mode whenever it is within LEASE_ROOM of P: right after a new peak, and
 * after every snapshot (which sets P to T).  A release that leaves
 * LEASE_ROOM below P opens the leases again.  A program that only grows so
 * costs what one shared counter costs, and one that churns below its peak
 * (a server in its steady state) shares nothing.
 *
 * A slot's update is a restartable sequence (arch.h): it reads the CPU the
 * thread runs on, W and the slot, and commits with one store, or the kernel
 * sends it to the slow path on preemption, migration or signal delivery.
 * Lease mode is 0, so a slot holds nothing but headroom; W's mode bits are
 * subtracted before the range check, so in any other mode the check fails.
 * Without rseq (glibc's registration off, an old kernel, aarch64) there
 * are no slots and every operation takes the W path: still exact, at the
 * cost of the shared line.  A thread that shares another's TLS without
 * its rseq registration (a vfork child, a raw clone) would update that
 * thread's CPU slot without the kernel's protection; neither may call
 * malloc (glibc's own per-thread state is as shared).
 *
 * A known gap: in direct mode the peak is raised just after the add, not
 * with it; a snapshot that falls between the two, with a release on
 * another thread in between as well, reports that interval's peak short
 * of the value the add reached, and gives it to the next interval.  (The
 * one shared counter before the leases had the same gap.)
 *
 * Signals and fork.  The lock is taken with every asynchronous signal
 * blocked, so a handler never waits for the thread it interrupted (see
 * lock_take for the synchronous ones and for fork).  An allocation that
 * finds the mode REVOKING waits for the lock: the settling counts it, and
 * the thread must not allocate again (a value the settling would not see)
 * before it is done.  A forked child takes its total again from the
 * counters (hds_total_fork_child).
 *
 * Workload: two slot updates per recorded allocation and its free (the
 * benchmark's churning threads: 94% of updates; the rest are blocks over
 * a slot's 64 KiB and slots run dry or full); an atomic add on W for the
 * rest; a settling (a membarrier call, 1 us here with another thread
 * running, and two signal-mask calls) per new peak reached from lease
 * mode, per LEASE_ROOM of release and regrowth at most, and per snapshot.
 */
#include "internal.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MODE_DIRECT   UINT64_C(1)
#define MODE_REVOKING UINT64_C(2)
#ifndef LEASE_ROOM
#define LEASE_ROOM    (INT64_C(128) << 10)   /* the distance below P that opens the leases */
#endif

struct hds_total hds_total = {
	.w = (MODE_DIRECT << HDS_TOTAL_MODE_SHIFT) | HDS_TOTAL_BIAS,
};
static uint32_t slots_mapped;   /* hds_total.slots' length; nslots drops to 0 without leases */

static inline uint64_t mode_of(uint64_t w) { return w >> HDS_TOTAL_MODE_SHIFT; }
static inline int64_t t_of(uint64_t w) { return (int64_t)((w & HDS_TOTAL_S_MASK) - HDS_TOTAL_BIAS); }
static inline uint64_t with_mode(uint64_t w, uint64_t mode) { return (w & HDS_TOTAL_S_MASK) | mode << HDS_TOTAL_MODE_SHIFT; }

extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

void hds_total_init(void)
{
	if (!HDS_ARCH_RSEQ || !&__rseq_size || !&__rseq_offset || __rseq_size < 20)
		return;
	long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) ||
	    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
		return;
	struct hds_total_slot *s = hds_map(sizeof *s * HDS_TOTAL_SLOTS);
	if (!s)
		return;
	hds_total.rseq_off = (long)__rseq_offset;
	hds_total.slots = s;
	slots_mapped = HDS_TOTAL_SLOTS;
	atomic_signal_fence(memory_order_seq_cst);
	hds_total.nslots = HDS_TOTAL_SLOTS;
}

void hds_note_peak(int64_t live)
{
	uint64_t v = live > 0 ? (uint64_t)live : 0;
	uint64_t cur = atomic_load_relaxed(&hds.peak_bytes);

	while (v > cur && !atomic_compare_exchange_weak_explicit(&hds.peak_bytes, &cur, v,
			memory_order_relaxed, memory_order_relaxed))
		;
	cur = atomic_load_relaxed(&hds.peak_since_prev);
	while (v > cur && !atomic_compare_exchange_weak_explicit(&hds.peak_since_prev, &cur, v,
			memory_order_relaxed, memory_order_relaxed))
		;
}

/*
 * The lock: 0, or the pid of the process one of whose threads holds it.
 * Taken with every asynchronous signal blocked, so a handler never waits
 * for the thread it interrupted.  Synchronous signals stay deliverable
 * (blocked, the kernel kills on them: a seccomp filter trapping
 * membarrier); a handler of one that allocates finds `holding` set and
 * does not wait.  A holder's pid that is not ours is a thread of the
 * process we were forked from (fork without our handler, or a handler
 * that ran before it): the lock is taken over.  Held for a membarrier call
 * and a pass over the slots at most.  Returns 0 when this thread holds it
 * already (nothing to drop).
 */
static _Atomic int lock;
static __thread int holding __attribute__((tls_model("initial-exec")));

static int lock_take(sigset_t *saved)
{
	static const int sync_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS };
	sigset_t all;

	if (holding)
		return 0;
	sigfillset(&all);
	for (size_t i = 0; i < sizeof sync_signals / sizeof *sync_signals; i++)
		sigdelset(&all, sync_signals[i]);
	pthread_sigmask(SIG_BLOCK, &all, saved);
	int me = getpid();
	for (unsigned spins = 0;; spins++) {
		int held = 0;
		if (atomic_compare_exchange_strong_explicit(&lock, &held, me, memory_order_acquire, memory_order_relaxed))
			break;
		if (held != me && atomic_compare_exchange_strong_explicit(&lock, &held, me, memory_order_acquire,
									  memory_order_relaxed))
			break;
		if (spins < 64) {
			sched_yield();
		} else {
			/* A real-time thread's sched_yield leaves a holder of
			 * lower priority on its CPU waiting: sleep instead (the
			 * system call, not nanosleep: no cancellation point). */
			struct timespec ts = { 0, 50000 };
			syscall(SYS_nanosleep, &ts, NULL);
		}
	}
	holding = 1;
	hds_tl_nopark++;   /* reach.c: a holder is never stopped */
	return 1;
}

static void lock_drop(int taken, const sigset_t *saved)
{
	if (!taken)
		return;
	hds_tl_nopark--;
	holding = 0;
	atomic_store_release(&lock, 0);
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/* Set W's mode, keeping S (which other threads keep adding to). */
static uint64_t set_mode(uint64_t mode)
{
	uint64_t w = atomic_load_relaxed(&hds_total.w);

	while (!atomic_compare_exchange_weak_explicit(&hds_total.w, &w, with_mode(w, mode),
			memory_order_seq_cst, memory_order_relaxed))
		;
	return w;
}

/* Close the leases (the lock held): the mode is REVOKING, every slot is
 * empty and S = T when it returns.  Returns T at the moment the slots'
 * headroom left S. */
static int64_t close_leases(void)
{
	uint64_t w = set_mode(MODE_REVOKING);

	if (mode_of(w) == HDS_TOTAL_LEASE) {
		/* Every CPU aborts a slot update in flight; an update that read
		 * the old mode and committed is visible once this returns.  If
		 * the call fails (a seccomp filter installed since start-up),
		 * the leases end for good: an update in flight may still land
		 * in a slot read below, and be lost. */
		if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0) {
			hds_total.nslots = 0;
			hds_warn("membarrier failed: the live-byte total may miss a few updates from now on", NULL);
		}
		uint64_t held = 0;
		for (uint32_t i = 0; i < slots_mapped; i++) {
			uint64_t v = atomic_load_relaxed(&hds_total.slots[i].v);
			if (v) {
				held += v;
				atomic_store_relaxed(&hds_total.slots[i].v, 0);
			}
		}
		w = atomic_add_relaxed(&hds_total.w, -held) - held;
	}
	return t_of(w);
}

/* Are there leases, and is total t far enough below the peak to open them? */
static inline int room_to_lease(int64_t t)
{
	return hds_total.nslots && t + LEASE_ROOM <= (int64_t)atomic_load_relaxed(&hds.peak_since_prev);
}

/*
 * Leave REVOKING for `mode` (DIRECT, or LEASE when there is room), the
 * lock held.  Allocations that added to S while the mode was REVOKING are
 * waiting for the lock; releases were not.  Ordering those releases first
 * and those allocations last is a true account (each is concurrent with
 * the settling), and then T only rises to the value left in S: the peak
 * is raised from it.  Returns T.
 */
static int64_t reopen(int may_lease)
{
	uint64_t w = atomic_load_relaxed(&hds_total.w), to;
	int64_t t;

	do {
		t = t_of(w);
		hds_note_peak(t);
		to = with_mode(w, may_lease && room_to_lease(t) ? HDS_TOTAL_LEASE : MODE_DIRECT);
	} while (!atomic_compare_exchange_weak_explicit(&hds_total.w, &w, to, memory_order_seq_cst, memory_order_relaxed));
	return t;
}

void hds_total_slow(int64_t d)
{
	uint64_t w = atomic_add_relaxed(&hds_total.w, (uint64_t)d) + (uint64_t)d;
	int64_t t = t_of(w);
	sigset_t saved;

	switch (mode_of(w)) {
	case MODE_DIRECT:   /* S is T */
		if (d > 0) {
			hds_note_peak(t);
		} else {
			/* Room below the peak: open the leases.  The slots are
			 * empty: the last settling emptied them, and nothing
			 * fills one outside lease mode. */
			while (mode_of(w) == MODE_DIRECT && room_to_lease(t_of(w)) &&
			       !atomic_compare_exchange_weak_explicit(&hds_total.w, &w, with_mode(w, HDS_TOTAL_LEASE),
					memory_order_seq_cst, memory_order_relaxed))
				;
		}
		break;
	case HDS_TOTAL_LEASE:   /* T <= S; past P, T may be a new peak */
		if (d > 0 && t > (int64_t)atomic_load_relaxed(&hds.peak_since_prev)) {
			int taken = lock_take(&saved);
			if (taken && mode_of(atomic_load_relaxed(&hds_total.w)) == HDS_TOTAL_LEASE) {
				hds_note_peak(close_leases());
				reopen(1);
			}
			/* Otherwise a settling since our add counted it. */
			lock_drop(taken, &saved);
		}
		break;
	default:   /* REVOKING: an allocation waits for the settling, which counts it */
		if (d > 0)
			lock_drop(lock_take(&saved), &saved);
		break;
	}
}

uint64_t hds_total_sync(void)
{
	sigset_t saved;
	int taken = lock_take(&saved);

	if (!taken)   /* a snapshot from a handler inside our own settling */
		return atomic_load_relaxed(&hds.peak_since_prev);
	int64_t t = close_leases();
	hds_note_peak(t);
	/* T's values up to now are in P (t includes the allocations that
	 * added to S before the slots were emptied).  The next interval starts
	 * from T; allocations that add while the mode is still REVOKING wait
	 * for the lock and are ordered in it, raised by reopen(). */
	uint64_t p = atomic_exchange_explicit(&hds.peak_since_prev, t > 0 ? (uint64_t)t : 0, memory_order_relaxed);
	reopen(0);
	lock_drop(taken, &saved);
	return p;
}

/*
 * fork: the child is alone, and whatever another thread of the parent was
 * doing here is cut: a settling half done (the lock taken, slots partly
 * emptied), or a block's stack counter changed and the total not yet, or
 * the reverse (the child has the block, or not, for good).  So the child
 * takes its total again from the counters, as its snapshots will report
 * them (after threads.c evened out their cut updates), empties the slots
 * and starts in direct mode, its interval starting from that total.  The
 * lock is not held across fork: a handler registered before ours, or
 * glibc's own locks taken in fork, could then wait on it.  Costs a pass
 * over every stack's counters per fork.  Left: a fork from a signal
 * handler that interrupted this very thread between a block's counter and
 * its total leaves the child's total off by that block (the update
 * finishes after the recount).
 */
void hds_total_fork_child(void)
{
	atomic_store_relaxed(&lock, 0);
	holding = 0;
	uint64_t held = 0;
	for (uint32_t i = 0; i < slots_mapped; i++)
		held += atomic_exchange_explicit(&hds_total.slots[i].v, 0, memory_order_relaxed);
	int64_t t;
	if (hds_snapshot_live_bytes(&t) < 0)   /* no memory: the parent's, as it stood */
		t = t_of(atomic_load_relaxed(&hds_total.w)) - (int64_t)held;
	atomic_store_relaxed(&hds_total.w, with_mode((uint64_t)t + HDS_TOTAL_BIAS, MODE_DIRECT));
	atomic_store_relaxed(&hds.peak_since_prev, t > 0 ? (uint64_t)t : 0);
	hds_note_peak(t);
	/* Without the registration no settling is possible: no leases. */
	if (hds_total.nslots && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
		hds_total.nslots = 0;
}
