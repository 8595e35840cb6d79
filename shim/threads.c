/*
 * threads.c - what the shim keeps per thread, and its life: the counter
 * shards every snapshot sums, and the unwinder's memory.
 *
 * Counters.  A thread adds what it allocates and frees to counters of its
 * own, one entry per stack it touched; a snapshot sums every thread's
 * entries per stack.  The allocation path so shares nothing with other
 * threads (no atomic read-modify-write, no contended cache line), and a
 * snapshot reads each entry under the entry's own sequence number (a
 * seqlock whose one writer is the owner thread): the four counters of an
 * entry are always read from one moment.  Each entry's bytes and count
 * agree (for a site of fixed-size blocks, bytes = count x size in every
 * snapshot, whatever the program is doing meanwhile), and so do their sums.
 *
 * Layout: a thread's entries are indexed by stack id, in chunks of one page
 * (HDS_CHUNK_N entries) made on first touch; its directory (id / N ->
 * chunk) is reserved for every possible id (MAP_NORESERVE) and costs a page
 * per 512 chunks used.  Entries never move, so a reader needs nothing from
 * the owner but the seqlock.
 *
 * Workload: one entry update per recorded allocation and per free of a
 * recorded block (hot); a chunk per HDS_CHUNK_N ids a thread touches; a
 * bundle per thread start, recycled (100,000 threads one after another use
 * one bundle).
 *
 * Life of a bundle (directory, chunks, the unwinder's memory):
 *  - a thread takes one at its first recorded call: a free one, or a new
 *    one, which is then registered for good in the list snapshots walk;
 *  - at thread exit our key's destructor gives it back, counters and all:
 *    the counts are deltas per stack, and it does not matter which bundle
 *    holds them, so the next thread just adds to them.  The release store
 *    of `owned` and the next owner's acquire CAS hand the entries over;
 *  - the thread can still allocate and free after that: glibc runs key
 *    destructors in rounds, in no promised order, and libraries free their
 *    thread state last.  Its tl_thread is then HDS_THREAD_GONE: updates go
 *    to the stack's global counters with atomic adds, bracketed by
 *    orphan_begin/orphan_end so that a snapshot that overlapped one reads
 *    the global counters again, and stacks are unwound without the
 *    per-thread memory (capture.c);
 *  - fork: the child holds the bundles of threads it does not have.  They
 *    are freed there, their counters kept; an update that fork cut in two
 *    leaves its entry's sequence odd, which the child evens (that one entry
 *    may then be off by that one update).
 * Each bundle also holds its thread's read-side mark for the live table
 * (hds_read_begin), so the writer thread can tell when memory the table
 * retired is no longer seen by anyone (hds_rcu_synchronize).
 * Bundles and chunks are never unmapped, so a reader always reads mapped
 * memory, and no lock is needed anywhere: readers may run concurrently
 * (the writer thread, an API snapshot, the exit snapshot from a signal
 * handler).  A reader that finds an entry mid-update waits for its owner
 * (spins, yields, sleeps: up to 2 s, for an owner waiting its turn on a
 * loaded machine); its own entries it takes at once (a signal handler
 * that interrupted its own update).
 */
#include "internal.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__thread struct hds_thread *hds_tl_thread __attribute__((tls_model("initial-exec")));

#define SLAB_BYTES   (64u << 10)   /* chunks are carved from slabs this big */
#define WAIT_LIMIT_NS (UINT64_C(2) * 1000000000u)   /* how long a reader waits for one update */

static pthread_key_t thread_key;
static int thread_key_ok;
static uint32_t dir_len;                             /* entries in each directory */
static _Atomic(struct hds_thread *) registry;         /* every bundle ever made */
static _Atomic(struct hds_thread *) free_hint;       /* the last one given back */
static _Atomic uint32_t nfree;                       /* bundles not owned */
static _Atomic uint64_t orphan_begin, orphan_end;    /* updates of global counters */
static _Atomic uint64_t chunk_bytes;                 /* chunks made (each touched on making) */

_Atomic uint64_t hds_rcu_gp = 1;
_Atomic uint64_t hds_rcu_orphans;
static int membarrier_ok;

static void thread_release(void *p);

int hds_threads_init(uint32_t max_stacks)
{
	dir_len = max_stacks / HDS_CHUNK_N + 1;
	thread_key_ok = pthread_key_create(&thread_key, thread_release) == 0;
	long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	membarrier_ok = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
			syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
	return 0;
}

int hds_rcu_synchronize(int max_ms)
{
	if (!membarrier_ok)
		return 0;
	uint64_t gp = atomic_add_relaxed(&hds_rcu_gp, 1) + 1;
	/* Every thread has now executed a full barrier: a reader whose mark
	 * we do not see below began after this point, and sees what was
	 * published before the call. */
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		return 0;
	for (int waited = 0; waited <= max_ms * 10; waited++) {
		int busy = atomic_load_acquire(&hds_rcu_orphans) != 0;
		for (struct hds_thread *t = atomic_load_acquire(&registry); t && !busy; t = t->next) {
			uint64_t c = atomic_load_acquire(&t->rcu);
			busy = c != 0 && c < gp;
		}
		if (!busy)
			return 1;
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* ---- bundles --------------------------------------------------------- */

static struct hds_thread *bundle_make(void)
{
	size_t unwind = hds_capture_mem_size();
	struct hds_thread *t = hds_map(sizeof *t);
	_Atomic(struct hds_chunk *) *dir = hds_map(sizeof *dir * dir_len);
	void *mem = unwind ? hds_map(unwind) : NULL;

	if (!t || !dir || (unwind && !mem))
		return NULL;   /* what was mapped stays: never unmapped, by rule */
	t->dir = dir;
	t->unwind = mem;
	t->unwind_size = unwind;
	atomic_store_relaxed(&t->owned, 1);
	struct hds_thread *head = atomic_load_relaxed(&registry);
	do
		t->next = head;
	while (!atomic_compare_exchange_weak_explicit(&registry, &head, t, memory_order_release,
						      memory_order_relaxed));
	return t;
}

static int bundle_claim(struct hds_thread *t)
{
	int expected = 0;

	if (!t || !atomic_compare_exchange_strong_explicit(&t->owned, &expected, 1, memory_order_acquire,
							   memory_order_relaxed))
		return 0;
	atomic_sub_relaxed(&nfree, 1);
	return 1;
}

/* A free bundle: the one given back last, else any from the registry. */
static struct hds_thread *bundle_take(void)
{
	struct hds_thread *t = atomic_exchange_explicit(&free_hint, NULL, memory_order_acquire);

	if (bundle_claim(t))
		return t;
	if (!atomic_load_relaxed(&nfree))
		return NULL;
	for (t = atomic_load_acquire(&registry); t; t = t->next)
		if (!atomic_load_relaxed(&t->owned) && bundle_claim(t))
			return t;
	return NULL;
}

static void bundle_free(struct hds_thread *t)
{
	atomic_add_relaxed(&nfree, 1);
	atomic_store_release(&t->owned, 0);
	atomic_store_release(&free_hint, t);
}

struct hds_thread *hds_thread_attach(void)
{
	struct hds_thread *t;

	if (atomic_load_relaxed(&hds.state) != HDS_ACTIVE)
		return NULL;
	t = bundle_take();
	if (!t)
		t = bundle_make();
	if (!t) {
		hds_tl_thread = HDS_THREAD_GONE;
		return NULL;
	}
	if (t->unwind)
		hds_capture_mem_reset(t->unwind);
	hds_tl_thread = t;
	if (thread_key_ok)
		pthread_setspecific(thread_key, t);
	return t;
}

/* Our key's destructor, in the exiting thread. */
static void thread_release(void *p)
{
	hds_tl_thread = HDS_THREAD_GONE;
	bundle_free(p);
}

/* ---- counting ---------------------------------------------------------- */

/* The global counters of stack id, for a thread without a bundle. */
static void count_global(uint32_t id, int64_t lb, int64_t lc, int64_t ab, int64_t ac)
{
	struct hds_stack *s = hds_stack_get(id);

	atomic_fetch_add_explicit(&orphan_begin, 1, memory_order_acq_rel);
	atomic_add_relaxed(&s->live_bytes, (uint64_t)lb);
	atomic_add_relaxed(&s->live_count, (uint64_t)lc);
	atomic_add_relaxed(&s->alloc_bytes, (uint64_t)ab);
	atomic_add_relaxed(&s->alloc_count, (uint64_t)ac);
	atomic_fetch_add_explicit(&orphan_end, 1, memory_order_release);
}

static struct hds_chunk *chunk_make(struct hds_thread *t, uint32_t d)
{
	if (d >= dir_len)
		return NULL;
	if (t->slab_left < sizeof(struct hds_chunk)) {
		t->slab = hds_map(SLAB_BYTES);
		if (!t->slab)
			return NULL;
		t->slab_left = SLAB_BYTES;
	}
	struct hds_chunk *c = (struct hds_chunk *)t->slab;
	t->slab += sizeof *c;
	t->slab_left -= sizeof *c;
	atomic_add_relaxed(&chunk_bytes, sizeof *c);
	atomic_store_release(&t->dir[d], c);   /* zero-filled: readers may look */
	if (d >= atomic_load_relaxed(&t->dir_used))
		atomic_store_release(&t->dir_used, d + 1);
	return c;
}

void hds_count_slow(uint32_t id, int64_t lb, int64_t lc, int64_t ab, int64_t ac)
{
	struct hds_thread *t = hds_tl_thread;

	hds_tl_nopark++;   /* the block is in the map, not yet counted; mmap may come */
	if (!t)
		t = hds_thread_attach();
	if (t && t != HDS_THREAD_GONE) {
		struct hds_chunk *c = atomic_load_relaxed(&t->dir[id / HDS_CHUNK_N]);
		if (c || (c = chunk_make(t, id / HDS_CHUNK_N))) {
			hds_tcount_add(&c->e[id % HDS_CHUNK_N], lb, lc, ab, ac);
			hds_tl_nopark--;
			return;
		}
	}
	count_global(id, lb, lc, ab, ac);
	hds_tl_nopark--;
}

/* ---- reading ----------------------------------------------------------- */

/* A reader found an update under way: spin a little, then yield, then
 * sleep (on a loaded machine the owner may wait its turn on another core
 * for milliseconds).  0 while it should look again; 1 once it has waited
 * WAIT_LIMIT_NS: an owner stopped mid-update for that long (a signal
 * handler that does not return), whose one update the snapshot then
 * takes as it is. */
static int wait_for_owner(int tries, uint64_t *since)
{
	if (tries < 64)
		return 0;
	if (tries < 1024) {
		sched_yield();
		return 0;
	}
	uint64_t now = hds_now_ns(CLOCK_MONOTONIC);
	if (!*since)
		*since = now;
	if (now - *since > WAIT_LIMIT_NS)
		return 1;
	struct timespec ts = { 0, 50000 };
	nanosleep(&ts, NULL);
	return 0;
}

/* Entry e of bundle t.  The reader's own bundle is never mid-update unless
 * the reader interrupted it (a signal handler writing a snapshot): then
 * waiting would be for itself, and the values are taken at once. */
static void read_entry(const struct hds_thread *t, const struct hds_tcount *e, struct hds_sums *out)
{
	int64_t lb = 0, lc = 0, ab = 0, ac = 0;
	uint64_t since = 0;

	for (int tries = 0;; tries++) {
		uint32_t s1 = atomic_load_acquire(&e->seq);
		lb = atomic_load_relaxed(&e->live_bytes);
		lc = atomic_load_relaxed(&e->live_count);
		ab = atomic_load_relaxed(&e->alloc_bytes);
		ac = atomic_load_relaxed(&e->alloc_count);
		HDS_FENCE(memory_order_acquire);
		if (!(s1 & 1) && atomic_load_explicit(&e->seq, HDS_TSAN ? memory_order_seq_cst : memory_order_relaxed) == s1)
			break;
		if (t == hds_tl_thread || wait_for_owner(tries, &since))
			break;
	}
	out->live_bytes += lb;
	out->live_count += lc;
	out->alloc_bytes += ab;
	out->alloc_count += ac;
}

void hds_counts_read(struct hds_sums *out, uint32_t n)
{
	/* The global counters, again if an update of them overlapped. */
	uint64_t since = 0;
	for (int tries = 0;; tries++) {
		uint64_t end = atomic_load_acquire(&orphan_end);
		for (uint32_t id = 0; id < n; id++) {
			struct hds_stack *s = hds_stack_get(id);
			out[id].live_bytes = (int64_t)atomic_load_relaxed(&s->live_bytes);
			out[id].live_count = (int64_t)atomic_load_relaxed(&s->live_count);
			out[id].alloc_bytes = (int64_t)atomic_load_relaxed(&s->alloc_bytes);
			out[id].alloc_count = (int64_t)atomic_load_relaxed(&s->alloc_count);
		}
		HDS_FENCE(memory_order_acquire);
		if (atomic_load_explicit(&orphan_begin, HDS_TSAN ? memory_order_seq_cst : memory_order_relaxed) == end)
			break;
		if (wait_for_owner(tries + 64, &since))
			break;
	}
	/* Every bundle, owned or not: a free one still holds the counts of the
	 * threads that had it. */
	for (struct hds_thread *t = atomic_load_acquire(&registry); t; t = t->next) {
		uint32_t used = atomic_load_acquire(&t->dir_used);
		for (uint32_t d = 0; d < used; d++) {
			const struct hds_chunk *c = atomic_load_acquire(&t->dir[d]);
			for (uint32_t k = 0; c && k < HDS_CHUNK_N && d * HDS_CHUNK_N + k < n; k++)
				read_entry(t, &c->e[k], &out[d * HDS_CHUNK_N + k]);
		}
	}
}

uint64_t hds_threads_resident(void)
{
	uint64_t total = atomic_load_relaxed(&chunk_bytes);

	for (struct hds_thread *t = atomic_load_acquire(&registry); t; t = t->next)
		total += hds_resident(t, sizeof *t) + hds_resident((const void *)t->dir, sizeof *t->dir * dir_len) +
			 (t->unwind ? hds_resident(t->unwind, t->unwind_size) : 0);
	return total;
}

uint64_t hds_threads_memo_hits(void)
{
	uint64_t total = 0;

	for (struct hds_thread *t = atomic_load_acquire(&registry); t; t = t->next)
		if (t->unwind)
			total += hds_capture_mem_memo_hits(t->unwind);
	return total;
}

/* ---- fork ---------------------------------------------------------------- */

/* The child, alone: free the bundles of the threads it does not have; even
 * out an update that fork cut in two. */
void hds_threads_after_fork(void)
{
	for (struct hds_thread *t = atomic_load_relaxed(&registry); t; t = t->next) {
		if (t == hds_tl_thread || !atomic_load_relaxed(&t->owned))
			continue;
		uint32_t used = atomic_load_relaxed(&t->dir_used);
		for (uint32_t d = 0; d < used; d++) {
			struct hds_chunk *c = atomic_load_relaxed(&t->dir[d]);
			for (uint32_t k = 0; c && k < HDS_CHUNK_N; k++) {
				uint32_t s = atomic_load_relaxed(&c->e[k].seq);
				if (s & 1)
					atomic_store_relaxed(&c->e[k].seq, s + 1);
			}
		}
		atomic_store_relaxed(&t->rcu, 0);
		t->rcu_depth = 0;
		bundle_free(t);
	}
	atomic_store_relaxed(&orphan_end, atomic_load_relaxed(&orphan_begin));
	atomic_store_relaxed(&hds_rcu_orphans, 0);
}
