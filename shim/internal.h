/*
 * internal.h - the shim's one internal header, sectioned by the file that
 * defines each group.
 *
 * Rules for everything declared here (the shim runs inside someone else's
 * program):
 *  - nothing allocates through the interposed functions: memory comes from
 *    hds_map() (mmap), which is never freed while the process lives;
 *  - nothing uses stdio; messages go through hds_warn() (write(2));
 *  - nothing on the allocation path takes a lock;
 *  - nothing changes errno as seen by the program: the entry points save and
 *    restore it around all recording.
 */
#ifndef HDS_INTERNAL_H
#define HDS_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "hd_format.h"

#define HDS_HIDDEN __attribute__((visibility("hidden")))
#define HDS_EXPORT __attribute__((visibility("default")))   /* the interposed names only */
/* An entry point whose common case needs no frame of its own (the shim is
 * built with frame pointers): it calls glibc at most, and reaches its other
 * cases by a tail call to a function that keeps one, whose frame is then
 * the one right under the program's.  The tail call is what keeps the
 * frame-pointer unwinder from losing the program's allocating function:
 * hence sibling calls here whatever the optimization level. */
#define HDS_FRAMELESS __attribute__((optimize("omit-frame-pointer", "optimize-sibling-calls")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* A fence; under ThreadSanitizer, which does not model fences, the code
 * that uses one also makes its accesses sequentially consistent. */
#if defined(__SANITIZE_THREAD__)
#define HDS_TSAN 1
#define HDS_FENCE(order) ((void)0)
#else
#define HDS_TSAN 0
#define HDS_FENCE(order) atomic_thread_fence(order)
#endif

/* Atomics carry their memory order in the name. */
#define atomic_load_relaxed(p)      atomic_load_explicit((p), memory_order_relaxed)
#define atomic_load_acquire(p)      atomic_load_explicit((p), memory_order_acquire)
#define atomic_store_relaxed(p, v)  atomic_store_explicit((p), (v), memory_order_relaxed)
#define atomic_store_release(p, v)  atomic_store_explicit((p), (v), memory_order_release)
#define atomic_add_relaxed(p, v)    atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define atomic_sub_relaxed(p, v)    atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define atomic_xchg_acq_rel(p, v)   atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define atomic_cas_acq_rel(p, e, v) \
	atomic_compare_exchange_strong_explicit((p), (e), (v), memory_order_acq_rel, memory_order_acquire)

/* ---- init.c: start-up; the process-wide state ---------------------------- */

struct hds_real {
	void *(*malloc)(size_t);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void  (*free)(void *);
	void *(*memalign)(size_t, size_t);
	int   (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
};

struct hds_config {
	int      unwinder;        /* enum hd_unwinder */
	int      unwind_check;    /* compare every stack with libunwind's (tests) */
	int      depth;           /* frames kept per stack, 1..HD_MAX_DEPTH */
	uint64_t interval_ns;     /* 0: no periodic snapshots */
	int      signo;           /* 0: no snapshot signal */
	int      children;        /* 0: strip the shim from LD_PRELOAD for exec'd children */
	uint32_t max_stacks;      /* capacity of the stack table */
	uint64_t sample_bytes;    /* mean sampling interval; 0: record everything */
	uint32_t keep;            /* interval snapshots kept on disk; 0: all */
	int      reach;           /* classify the live blocks at exit (reach.c) */
#define HDS_SAMPLED_COUNT_SCALE 1024   /* sampled: stack counts are in 1/1024ths */
	char     outdir[4096];    /* absolute output directory */
};

enum hds_state {
	HDS_UNINIT = 0,  /* nothing set up yet */
	HDS_BOOTING,     /* one thread is inside hds_init_core() */
	HDS_ACTIVE,      /* recording */
	HDS_PASSIVE,     /* not recording (setuid program, or set-up failed) */
};

struct hds_globals {
	_Atomic int state;                 /* enum hds_state */
	struct hds_real real;              /* where allocations really go */
	struct hds_config cfg;
	int foreign_malloc;                /* malloc is not glibc's */
	_Atomic int sampled_glibc;         /* sampled mode, glibc's malloc: set once ACTIVE */

	/* Process-wide counters.  The live bytes are total.c's. */
	_Atomic uint64_t peak_bytes;
	_Atomic uint64_t peak_since_prev;
	_Atomic uint64_t unknown_frees;
	_Atomic uint64_t dropped_allocs;
	_Atomic uint64_t dropped_stacks;
	_Atomic uint64_t untracked_allocs;
	_Atomic uint64_t unwind_fallbacks;   /* stacks our unwinder handed to libunwind */
	_Atomic uint64_t unwind_checked;     /* HEAPDELTA_UNWIND_CHECK: stacks compared */
	_Atomic uint64_t unwind_mismatches;  /* ... that differed from libunwind's */
	_Atomic uint64_t unwind_nocfi;       /* ... not compared: through code without CFI (JIT) */
	_Atomic uint64_t mismatched_frees;   /* releases by the wrong family (free of new...) */
	/* Address-space epoch: raised each time modules are found unloaded
	 * (modules.c).  Stacks and module records carry epochs, so an address
	 * names the module that was mapped there when its stack was seen. */
	_Atomic uint32_t map_epoch;

	uint64_t start_mono_ns;
	int pid;                           /* refreshed in the child after fork */
	char exe[4096];                    /* /proc/self/exe at start */
	char *cmdline;                     /* /proc/self/cmdline, NUL-separated, hds_map()ed */
	size_t cmdline_len;
};

HDS_HIDDEN extern struct hds_globals hds;

/* Set up tables and configuration; safe to call from the first hook, before
 * constructors have run.  Returns with hds.state ACTIVE or PASSIVE, or
 * BOOTING when another thread is doing it (the caller passes through). */
HDS_HIDDEN void hds_init_core(void);

/* ---- options.c: HEAPDELTA_* into hds.cfg --------------------------------- */

HDS_HIDDEN void hds_config_load(struct hds_config *cfg);

/* ---- process.c: the process's identity ----------------------------------- */

/* hds.exe and hds.cmdline, read from /proc at start-up. */
HDS_HIDDEN void hds_process_identity(void);
/* Remove the shim from LD_PRELOAD so exec'd children run without it. */
HDS_HIDDEN void hds_strip_from_ld_preload(void);

/* ---- os.c: helpers without malloc or stdio -------------------------------- */

/* Anonymous private memory that is never freed, reserved without commit
 * (MAP_NORESERVE): pages cost only once touched.  NULL on failure. */
HDS_HIDDEN void *hds_map(size_t size);
/* Give back memory from hds_map (only memory no other thread can see). */
HDS_HIDDEN void hds_unmap(void *p, size_t size);
/* Call fn for every mapping of the shim's; the count, or UINT32_MAX when
 * the registry overflowed (some are missing).  For reach.c. */
HDS_HIDDEN uint32_t hds_map_each(void (*fn)(void *ctx, uint64_t lo, uint64_t hi), void *ctx);
/* Resident bytes of [addr, addr+len) by mincore(): touched pages only. */
HDS_HIDDEN uint64_t hds_resident(const void *addr, uint64_t len);
/* One line on stderr, prefixed "heapdelta: ", without stdio or malloc. */
HDS_HIDDEN void hds_warn(const char *msg, const char *detail);
HDS_HIDDEN uint64_t hds_now_ns(int clock);
/* v as decimal digits at p, NUL-terminated; returns the end. */
HDS_HIDDEN char *hds_put_dec(char *p, uint64_t v);
/* Sort n records of two 64-bit words (any struct of that layout) by the
 * first word, then the second, in place (heapsort: no malloc, which
 * glibc's qsort may call). */
HDS_HIDDEN void hds_sort_pairs(void *base, size_t n);

/* ---- total.c: the live bytes and their exact peak ------------------------- */

#define HDS_TOTAL_MODE_SHIFT 48
#define HDS_TOTAL_S_MASK   ((UINT64_C(1) << HDS_TOTAL_MODE_SHIFT) - 1)
#define HDS_TOTAL_BIAS     (UINT64_C(1) << 47)   /* S is kept biased: T can dip below 0 */
#define HDS_TOTAL_LEASE    0                     /* the mode in which slots are valid */
#define HDS_TOTAL_SLOTS    1024                  /* CPU numbers from here up take the shared word */

struct hds_total_slot { _Atomic uint64_t v; char pad[56]; };   /* headroom, bytes */

struct hds_total {
	_Alignas(64) _Atomic uint64_t w;         /* mode << 48 | (S + bias) */
	_Alignas(64) struct hds_total_slot *slots;   /* read-mostly from here */
	uint32_t nslots;                         /* 0: no leases (no rseq) */
	long rseq_off;                           /* glibc's __rseq_offset */
};
HDS_HIDDEN extern struct hds_total hds_total;

/* Register for membarrier's rseq command and map the slots; without rseq
 * (or on aarch64) leave the leases closed: every update takes the shared
 * word. */
HDS_HIDDEN void hds_total_init(void);
/* The update a slot could not take. */
HDS_HIDDEN void hds_total_slow(int64_t d);
/* Raise peak_bytes and peak_since_prev to at least `live`. */
HDS_HIDDEN void hds_note_peak(int64_t live);
/* For a snapshot: the peak since the previous one, which starts again from
 * the total now. */
HDS_HIDDEN uint64_t hds_total_sync(void);
/* In a forked child, before its snapshots: the total from the counters. */
HDS_HIDDEN void hds_total_fork_child(void);

/* Move the live total by d bytes (an allocation's weight, or minus a
 * release's): this CPU's slot when it can, the shared word otherwise. */
static inline void hds_total_add(int64_t d)
{
#if HDS_ARCH_RSEQ
	/* nslots first: without leases rseq_off is not glibc's offset, and the
	 * sequence's first store must not land at %fs:8 (the thread's DTV). */
	if (likely(hds_total.nslots) &&
	    likely(hds_rseq_slot_add(hds_total.rseq_off, hds_total.slots, hds_total.nslots, &hds_total.w, d)))
		return;
#endif
	hds_total_slow(d);
}

/* ---- entry.c: the interposed functions ---------------------------------- */

/* hds_busy while a C++ operator forwards to the real one (entry_cxx.c): the
 * malloc beneath is passed through, and the operator records the block. */
#define HDS_BUSY_FORWARD 2
/* The block a C++ delete has taken out of the live map and is passing to
 * the real operator (entry_cxx.c): the free beneath leaves the map alone. */
HDS_HIDDEN extern __thread void *hds_tl_releasing __attribute__((tls_model("initial-exec")));
/* The C++ operators' common case (entry.c): allocate with the real malloc
 * and record as `kind` (NULL: the fast path does not apply, or malloc
 * failed: forward to the real operator); release with the real free
 * (0: does not apply).  entry: the operator's own frame. */
HDS_HIDDEN void *hds_new_fast(size_t n, int kind, const void *entry);
HDS_HIDDEN int hds_delete_fast(void *p, int kind, const void *entry);
/* Kept records of mismatched releases. */
#define HDS_MISMATCH_MAX 16

/* Record block p (sampling permitting) of `size` requested bytes from the
 * `kind` family, attributed to the stack above the interposed function
 * whose frame is `entry`.  Called with hds_busy set. */
HDS_HIDDEN void hds_record_alloc(void *p, uint64_t size, int kind, const void *entry);
/* Take p out of the live map before it is released; its entry, or 0 when
 * it was not recorded (counted as an unknown free when by_program). */
HDS_HIDDEN uint64_t hds_forget(void *p, int by_program);
/* Take a removed block's bytes and count off its stack and the totals. */
HDS_HIDDEN void hds_uncount(uint64_t entry);
/* Count a release by the wrong family (entry: the block's live-map entry)
 * and keep the first ones with the releasing stack.  hds_busy set. */
HDS_HIDDEN void hds_note_mismatch(uint64_t entry, int free_kind, const void *frame);
/* Encode the MISMATCHES payload (NULL or too small: only measure); returns
 * bytes.  The count may grow between a measure and an encode: measure with
 * a margin (the kept records are at most HDS_MISMATCH_MAX). */
HDS_HIDDEN size_t hds_mismatches_encode(unsigned char *buf, size_t cap);

/*
 * What every interposed call reads of its thread, in one block of
 * thread-local storage so that the fast paths find both with one address
 * (a shared object's initial-exec variables each cost a load of their
 * offset first).
 *  - busy: nonzero while this thread runs shim code: allocations made then
 *    (by libunwind, the loader, ourselves) are passed through unrecorded.
 *    Also set for the duration of a snapshot in the writing thread.
 *  - sample_left: sampled mode's countdown of bytes (entry.c's sample_this).
 */
struct hds_tl_entry {
	int64_t sample_left;
	int busy;
};
HDS_HIDDEN extern __thread struct hds_tl_entry hds_tl_entry __attribute__((tls_model("initial-exec")));
#define hds_busy (hds_tl_entry.busy)
#define hds_tl_sample_left (hds_tl_entry.sample_left)

/* ---- threads.c: per-thread counter shards and unwinder memory ---------- */

/* One thread's counters of one stack.  Written by the owner thread only,
 * under seq (odd while it writes); read by snapshots. */
struct hds_tcount {
	_Atomic uint32_t seq;
	uint32_t unused;
	_Atomic int64_t live_bytes, live_count, alloc_bytes, alloc_count;
};

#define HDS_CHUNK_N (4096 / sizeof(struct hds_tcount))   /* entries per chunk: a page */
struct hds_chunk { struct hds_tcount e[HDS_CHUNK_N]; };

/* A thread's bundle (see threads.c for its life). */
struct hds_thread {
	_Atomic(struct hds_chunk *) *dir;   /* stack id / HDS_CHUNK_N -> chunk */
	_Atomic uint32_t dir_used;          /* directory entries in use: [0, dir_used) */
	_Atomic int owned;                  /* a thread has it */
	struct hds_thread *next;            /* registry, immutable once published */
	_Atomic uint64_t rcu;               /* inside a live-table operation: the grace
					       period it began in; 0 outside */
	uint32_t rcu_depth;                 /* owner only: nesting (a signal handler's free) */
	void *unwind;                       /* capture.c's per-thread memory, or NULL */
	size_t unwind_size;
	unsigned char *slab;                /* owner only: where the next chunk comes from */
	size_t slab_left;
};

/* Sums over every thread, per stack (hds_counts_read). */
struct hds_sums { int64_t live_bytes, live_count, alloc_bytes, alloc_count; };

/* NULL: no bundle yet; HDS_THREAD_GONE: the thread gave it back at exit. */
#define HDS_THREAD_GONE ((struct hds_thread *)1)
HDS_HIDDEN extern __thread struct hds_thread *hds_tl_thread __attribute__((tls_model("initial-exec")));

HDS_HIDDEN int hds_threads_init(uint32_t max_stacks);
/* Give this thread a bundle (its first recorded call).  NULL when the shim
 * is not active or no memory could be had (then the thread counts into the
 * global counters). */
HDS_HIDDEN struct hds_thread *hds_thread_attach(void);
/* This thread's bundle, made on first use; NULL when it has none. */
static inline struct hds_thread *hds_thread(void)
{
	struct hds_thread *t = hds_tl_thread;

	if (likely((uintptr_t)t > 1))
		return t;
	return t ? NULL : hds_thread_attach();
}
/* Add to stack id's counters: the slow part of hds_count. */
HDS_HIDDEN void hds_count_slow(uint32_t id, int64_t lb, int64_t lc, int64_t ab, int64_t ac);
/* Sum every thread's counters and the global ones into out[0..n), each
 * entry read at one moment (n: hds_stacks_count() at the snapshot). */
HDS_HIDDEN void hds_counts_read(struct hds_sums *out, uint32_t n);
HDS_HIDDEN uint64_t hds_threads_resident(void);
/* Stacks every thread's unwinder found in its memo, since the start. */
HDS_HIDDEN uint64_t hds_threads_memo_hits(void);
HDS_HIDDEN void hds_threads_after_fork(void);

/*
 * Read-side critical sections for the live table (userspace RCU over
 * membarrier): a thread marks itself inside with plain stores, and the one
 * that wants to free memory a reader might still see waits for every
 * thread to be outside or in a later period (hds_rcu_synchronize).  The
 * membarrier system call orders the readers' plain stores for it, so the
 * read side costs no fence.  Threads without a bundle count themselves in
 * hds_rcu_orphans with atomic adds (rare: after their exit hook).
 */
HDS_HIDDEN extern _Atomic uint64_t hds_rcu_gp;
HDS_HIDDEN extern _Atomic uint64_t hds_rcu_orphans;
static inline struct hds_thread *hds_read_begin(void)
{
	struct hds_thread *t = hds_thread();

	if (likely(t != NULL)) {
		if (t->rcu_depth++ == 0)
			atomic_store_relaxed(&t->rcu, atomic_load_relaxed(&hds_rcu_gp));
		atomic_signal_fence(memory_order_seq_cst);
	} else {
		atomic_fetch_add_explicit(&hds_rcu_orphans, 1, memory_order_seq_cst);
	}
	return t;
}

static inline void hds_read_end(struct hds_thread *t)
{
	if (likely(t != NULL)) {
		atomic_signal_fence(memory_order_seq_cst);
		if (--t->rcu_depth == 0)
			atomic_store_release(&t->rcu, 0);
	} else
		atomic_fetch_sub_explicit(&hds_rcu_orphans, 1, memory_order_release);
}

/* Wait (at most max_ms) until no thread can still see what was unpublished
 * before the call.  1 when so; 0 when it timed out or the kernel lacks
 * membarrier (then nothing may be freed).  Never from inside a read-side
 * section (it would wait for itself). */
HDS_HIDDEN int hds_rcu_synchronize(int max_ms);

/* Seqlock writer: the owner thread only.  Plain loads and stores (relaxed
 * atomics compile to them), ordered by the two sequence stores. */
static inline void hds_tcount_add(struct hds_tcount *e, int64_t lb, int64_t lc, int64_t ab, int64_t ac)
{
	uint32_t s = atomic_load_relaxed(&e->seq);

	atomic_store_relaxed(&e->seq, s + 1);
	HDS_FENCE(memory_order_release);
	if (HDS_TSAN) {
		atomic_fetch_add(&e->live_bytes, lb);
		atomic_fetch_add(&e->live_count, lc);
		atomic_fetch_add(&e->alloc_bytes, ab);
		atomic_fetch_add(&e->alloc_count, ac);
	} else {
		atomic_store_relaxed(&e->live_bytes, atomic_load_relaxed(&e->live_bytes) + lb);
		atomic_store_relaxed(&e->live_count, atomic_load_relaxed(&e->live_count) + lc);
		if (ab | ac) {
			atomic_store_relaxed(&e->alloc_bytes, atomic_load_relaxed(&e->alloc_bytes) + ab);
			atomic_store_relaxed(&e->alloc_count, atomic_load_relaxed(&e->alloc_count) + ac);
		}
	}
	atomic_store_release(&e->seq, s + 2);
}

/* Add to stack id's counters, in this thread's shard. */
static inline void hds_count(uint32_t id, int64_t lb, int64_t lc, int64_t ab, int64_t ac)
{
	struct hds_thread *t = hds_tl_thread;
	struct hds_chunk *c;

	if (likely((uintptr_t)t > 1) && likely((c = atomic_load_relaxed(&t->dir[id / HDS_CHUNK_N])) != NULL))
		hds_tcount_add(&c->e[id % HDS_CHUNK_N], lb, lc, ab, ac);
	else
		hds_count_slow(id, lb, lc, ab, ac);
}

/* ---- cfi.c: frame rules from .eh_frame, cached by return address -------- */

/* A frame rule, packed into 64 bits for the cache (see hds_rule_pack).
 * fp and sp are the architecture's frame and stack pointers (rbp/rsp,
 * x29/sp: arch.h). */
struct hds_rule {
	int cfa_fp;         /* CFA = fp + cfa_off (else sp + cfa_off) */
	int64_t cfa_off;
	int end;            /* the return address is undefined: outermost frame */
	int64_t ra_off;     /* RA = *(CFA + ra_off) */
	int ra_lr;          /* RA is still in the link register (aarch64 x30, a
			       frame that has not saved it): innermost frames only */
	int fp_saved;       /* fp = *(CFA + fp_off) (else unchanged) */
	int64_t fp_off;
	int bad;            /* not expressible: use libunwind */
};

#define HDS_RULE_NONE        UINT64_C(1)   /* no CFI covers the address */
#define HDS_RULE_UNSUPPORTED UINT64_C(2)   /* CFI we do not interpret */
#define HDS_RULE_END         UINT64_C(3)   /* outermost frame */

/* A signed field of `bits` bits at `shift` (arch.h sets the widths: the
 * offsets of saved registers from the CFA are 8 or 16 bytes on x86-64,
 * the size of the whole frame on aarch64, whose frame record sits at its
 * bottom). */
static inline int hds_rule_fits(int64_t x, int bits)
{
	return x >= -((int64_t)1 << (bits - 1)) && x < ((int64_t)1 << (bits - 1));
}

static inline uint64_t hds_rule_field(int64_t x, int shift, int bits)
{
	return ((uint64_t)x & ((UINT64_C(1) << bits) - 1)) << shift;
}

static inline int64_t hds_rule_sfield(uint64_t v, int shift, int bits)
{
	return (int64_t)(v << (64 - shift - bits)) >> (64 - bits);
}

static inline uint64_t hds_rule_pack(const struct hds_rule *r)
{
	if (r->bad || r->ra_off % 8 || r->fp_off % 8 || !hds_rule_fits(r->cfa_off, HDS_RULE_CFA_BITS) ||
	    !hds_rule_fits(r->ra_off / 8, HDS_RULE_RA_BITS) || !hds_rule_fits(r->fp_off / 8, HDS_RULE_FP_BITS))
		return HDS_RULE_UNSUPPORTED;
	if (r->end)
		return HDS_RULE_END;
	return (uint64_t)(r->cfa_fp ? 4 : 0) | (uint64_t)(r->fp_saved ? 8 : 0) |
	       (uint64_t)(r->ra_lr ? 16 : 0) |
	       hds_rule_field(r->ra_off / 8, HDS_RULE_RA_SHIFT, HDS_RULE_RA_BITS) |
	       hds_rule_field(r->fp_off / 8, HDS_RULE_FP_SHIFT, HDS_RULE_FP_BITS) |
	       hds_rule_field(r->cfa_off, HDS_RULE_CFA_SHIFT, HDS_RULE_CFA_BITS);
}

static inline int hds_rule_kind(uint64_t v) { return (int)(v & 3); }   /* 0: a normal rule */
static inline int hds_rule_cfa_fp(uint64_t v) { return (v & 4) != 0; }
static inline int hds_rule_fp_saved(uint64_t v) { return (v & 8) != 0; }
static inline int hds_rule_ra_lr(uint64_t v) { return (v & 16) != 0; }
static inline int64_t hds_rule_ra_off(uint64_t v) { return hds_rule_sfield(v, HDS_RULE_RA_SHIFT, HDS_RULE_RA_BITS) * 8; }
static inline int64_t hds_rule_fp_off(uint64_t v) { return hds_rule_sfield(v, HDS_RULE_FP_SHIFT, HDS_RULE_FP_BITS) * 8; }
static inline int64_t hds_rule_cfa_off(uint64_t v) { return hds_rule_sfield(v, HDS_RULE_CFA_SHIFT, HDS_RULE_CFA_BITS); }

HDS_HIDDEN int hds_cfi_init(void);
/* The rule for code address pc (a return address minus one). */
HDS_HIDDEN uint64_t hds_cfi_rule(uint64_t pc);
HDS_HIDDEN uint64_t hds_cfi_resident(void);
/* Forget the cached rules of addresses in [lo, hi): a module went away. */
HDS_HIDDEN void hds_cfi_forget(uint64_t lo, uint64_t hi);

/* ---- capture.c: the only file that includes libunwind ------------------- */

/* Load libunwind privately (RTLD_LOCAL) and note the shim's own text range.
 * Returns 0, or -1 when libunwind is unavailable (frame pointers are used). */
HDS_HIDDEN int hds_capture_init(void);
/* Room for one capture: HD_MAX_DEPTH frames and the shim's own above them. */
#define HDS_CAPTURE_ROOM (HD_MAX_DEPTH + 9)
/* Capture up to `max` return addresses of the current thread, innermost
 * first; *frames is set to the first that is not the shim's own: in buf
 * (room for HDS_CAPTURE_ROOM of them), or in this thread's unwinder memory,
 * valid until its next capture.  `entry` is the frame address
 * (__builtin_frame_address(0)) of the interposed function the program
 * called: the cfi unwinder starts at its caller.  Sets *truncated when the
 * stack was deeper than max.  Sets *chain to the stack's hash chain
 * (hds_hash_step over frames[n-1] .. frames[0]) when the unwinder knew it,
 * else 0 (with Python frames on, the chain leaves the eval-loop frames out:
 * python.c).  Returns the number of frames. */
HDS_HIDDEN int hds_capture(uintptr_t *buf, const uintptr_t **frames, int max, int *truncated, const void *entry,
			   uint64_t *chain);
/* After an hds_capture on this thread that set *chain, with Python frames
 * on: the index of its first eval-loop frame (hds_is_eval) in frames[i..n),
 * n if none. */
HDS_HIDDEN int hds_capture_next_eval(int i, int n);
/* The stack of this thread's last capture as interned before, when the
 * unwinder found the capture in its memo of whole stacks and was told the
 * id: that id + 1; else 0.  hds_capture_note_stack tells it (the id of the
 * stack of frames the last capture gave, as they were). */
HDS_HIDDEN uint32_t hds_capture_known_stack(void);
HDS_HIDDEN void hds_capture_note_stack(uint32_t id);
/* Size of the unwinder's per-thread memory (threads.c keeps it in the
 * thread's bundle), and its reset for a new owner. */
HDS_HIDDEN size_t hds_capture_mem_size(void);
HDS_HIDDEN void hds_capture_mem_reset(void *mem);
/* Stacks found in the memo by the threads that owned this memory (read
 * from any thread: a relaxed load of a counter its owner stores). */
HDS_HIDDEN uint64_t hds_capture_mem_memo_hits(const void *mem);
/* Nonzero when pc lies in the shim's own code. */
HDS_HIDDEN int hds_capture_in_shim(uint64_t pc);
/* This thread's frame that called the function at [lo, hi): its stack
 * pointer after the call and its callee-saved registers (see capture.c). */
HDS_HIDDEN int hds_capture_caller_of(uint64_t lo, uint64_t hi, uint64_t *sp, uint64_t *regs, int max);

/* ---- stacks.c: the stack interning table -------------------------------- */

struct hds_stack {               /* one cache line */
	_Atomic uint64_t live_bytes;
	_Atomic uint64_t live_count;
	_Atomic uint64_t alloc_bytes;
	_Atomic uint64_t alloc_count;
	uint64_t hash;
	uint64_t frames_off;         /* index of the first frame in the frame arena */
	uint16_t depth;
	uint16_t flags;              /* enum hd_stack_flags */
	_Atomic uint32_t ready;      /* 1 once published; 2 lost a race, unused */
	_Atomic uint32_t epoch;      /* map epoch its frames are valid in (raised when still valid) */
	_Atomic uint32_t dead;       /* a module under its frames went away: never matched again */
	uint32_t pad;
};

/* A stack's hash is a chain over its frames from the outermost inwards,
 * so an unwinder that reuses the outer part of a stack can keep the chain
 * value of that part and hash only the new inner frames. */
#define HDS_HASH_SEED UINT64_C(0x2545f4914f6cdd1d)
static inline uint64_t hds_hash_step(uint64_t h, uint64_t frame)
{
	h = (h ^ frame) * UINT64_C(0x9e3779b97f4a7c15);
	return h ^ (h >> 29);
}

/* The chain of frames f[depth-1] .. f[0], continued from h (HDS_HASH_SEED
 * for a whole stack). */
static inline uint64_t hds_hash_chain(uint64_t h, const uintptr_t *f, int depth)
{
	for (int i = depth - 1; i >= 0; i--)
		h = hds_hash_step(h, f[i]);
	return h;
}

static inline uint64_t hds_hash_final(uint64_t chain, int depth, unsigned flags)
{
	uint64_t h = chain ^ ((uint64_t)depth << 48) ^ flags;
	h ^= h >> 32;
	h *= UINT64_C(0xd6e8feb86659fd93);
	return h ^ (h >> 32);
}

HDS_HIDDEN int hds_stacks_init(uint32_t max_stacks);
/* Return the id of the stack (frames, depth, flags), interning it when it is
 * new (then *fresh is set); -1 when the table is full (the caller counts a
 * dropped allocation). */
HDS_HIDDEN int64_t hds_stack_intern(const uintptr_t *frames, int depth, unsigned flags, int *fresh);
/* The same with the chain value of frames[depth-1 .. 0] already known. */
HDS_HIDDEN int64_t hds_stack_intern_chain(const uintptr_t *frames, int depth, unsigned flags,
					  uint64_t chain, int *fresh);
/* In both: a stack found with an older epoch is checked with
 * hds_modules_changed(); if a module under its frames was unloaded or
 * loaded since, it is dead (its counters stay, it is never matched again)
 * and the frames are interned anew under the current epoch. */
/* Stack record by id (id < hds_stacks_count()). */
HDS_HIDDEN struct hds_stack *hds_stack_get(uint32_t id);
HDS_HIDDEN const uintptr_t *hds_stack_frames(const struct hds_stack *s);
/* Number of ids handed out so far (published or not). */
HDS_HIDDEN uint32_t hds_stacks_count(void);
HDS_HIDDEN uint64_t hds_stacks_resident(void);

/* ---- live.c: live blocks by address ------------------------------------- */

/* An entry packs the stack id + 1 (24 bits) and a 40-bit payload: the
 * function family that allocated the block (2 bits, enum hds_kind) and its
 * requested size (38 bits, 256 GiB); 0 is "no block here". */
#define HDS_LIVE_SIZE_BITS   40
#define HDS_LIVE_PAYLOAD_MAX ((UINT64_C(1) << HDS_LIVE_SIZE_BITS) - 1)
#define HDS_LIVE_KIND_SHIFT  38
#define HDS_LIVE_MAX_SIZE    ((UINT64_C(1) << HDS_LIVE_KIND_SHIFT) - 1)
#define HDS_LIVE_MAX_STACK   ((UINT32_C(1) << 24) - 2)

/* Which family allocated a block, for matching its release. */
enum hds_kind {   /* the values of the format's enum hd_alloc_kind */
	HDS_KIND_MALLOC    = HD_KIND_MALLOC,
	HDS_KIND_NEW       = HD_KIND_NEW,
	HDS_KIND_NEW_ARRAY = HD_KIND_NEW_ARRAY,
};

HDS_HIDDEN int hds_live_init(int granule_shift, int sparse);
/* Record block p with `payload` (hds_live_payload()); returns the entry
 * that was in its slot before (0 normally;
 * nonzero when a free went unseen, and the caller un-counts it), or
 * UINT64_MAX when p cannot be recorded (address out of range, no memory). */
HDS_HIDDEN uint64_t hds_live_insert(const void *p, uint32_t stack_id, uint64_t payload);
/* Forget block p and return its entry, or 0 when p was not recorded. */
HDS_HIDDEN uint64_t hds_live_remove(const void *p);
/* The same, looking only in the maps in `maps`: when the caller knows the
 * block's requested size was under 4 KiB (HDS_LIVE_FINE) or at least 4 KiB
 * (HDS_LIVE_COARSE). */
#define HDS_LIVE_FINE   1
#define HDS_LIVE_COARSE 2
#define HDS_LIVE_BLOCK  256    /* requested sizes from here go to blocks_large.c */
HDS_HIDDEN uint64_t hds_live_remove_in(const void *p, unsigned maps);
/*
 * Sampled mode: per 4 KiB page of addresses, how many recorded blocks
 * start in it (saturating: at 255 it stays), kept by hds_live_insert and
 * hds_live_remove_in.  A free whose page counts 0 was not recorded and
 * skips the maps: most frees, when one allocation in thousands is
 * recorded (at one per 512 KiB, about one page in a hundred of a heap
 * holds a recorded block).  An allocation is recorded before it is
 * returned, so its free, wherever it happens, sees the count.  Pages next
 * to each other count in bytes next to each other: 64 KiB of counters
 * cover 256 MiB of heap (farther pages share them, which costs a look in
 * the maps, never a miss), and frees near each other read one cache line
 * (a byte per hashed block address spread them over all 1,024 lines: perf
 * put half of a sampled free's time on that one load).
 */
#define HDS_LIVE_FILTER_BITS 16
HDS_HIDDEN extern _Atomic uint8_t hds_live_filter[1u << HDS_LIVE_FILTER_BITS];
static inline _Atomic uint8_t *hds_live_filter_of(const void *p)
{
	uintptr_t a = (uintptr_t)p;

	return &hds_live_filter[((a >> 12) ^ (a >> 28)) & ((1u << HDS_LIVE_FILTER_BITS) - 1)];
}
/* May block p be recorded?  (Sampled mode only; always 1 otherwise.) */
static inline int hds_live_maybe(const void *p)
{
	return !hds.cfg.sample_bytes || atomic_load_relaxed(hds_live_filter_of(p)) != 0;
}
/*
 * Sampled mode's common case, decided inline by malloc, free and the C++
 * operators so that they go straight to glibc: the shim active in sampled
 * mode with glibc's malloc, and an allocation that is not sampled or the
 * free of a block never recorded.  An allocation is not sampled when this
 * thread's countdown of bytes (entry.c's sample_this) stays above zero;
 * when it would not, the countdown is left as it was and the full path
 * draws and records.  Inside the shim (hds_busy) an allocation takes the
 * full path, which passes it through without touching the countdown (a new
 * under an operator that forwards would otherwise count its bytes twice,
 * and malloc's count of untracked allocations would miss it); a free may
 * skip the map there too, since the full path takes out only a block that
 * is in it.
 */
static inline int hds_sampled_fast(void)
{
	/* acquire: what init set before it (hds.real) is seen after it */
	return atomic_load_acquire(&hds.sampled_glibc);
}
static inline int hds_sampled_countdown_skips(uint64_t size)
{
	if (unlikely(hds_busy))
		return 0;
	int64_t left = hds_tl_sample_left - (int64_t)size;
	if (likely(left > 0)) {
		hds_tl_sample_left = left;
		return 1;
	}
	return 0;
}
static inline int hds_sampled_alloc_skips(uint64_t size)
{
	return hds_sampled_fast() && hds_sampled_countdown_skips(size);
}
/* No recorded block starts in p's page (the C++ operators test this after
 * their own decision).  NULL's page is the filter's first counter: while it
 * counts 0, free(NULL) skips too, and otherwise the full path takes it. */
static inline int hds_sampled_filter_skips(const void *p)
{
	return !atomic_load_relaxed(hds_live_filter_of(p));
}
static inline int hds_sampled_free_skips(const void *p)
{
	return hds_sampled_fast() && hds_sampled_filter_skips(p);
}
/* realloc of a block never recorded (or of NULL, as a malloc), to a size
 * not sampled: the real realloc, and the countdown as the full path would
 * leave it. */
static inline int hds_sampled_realloc_skips(const void *old, uint64_t size)
{
	return hds_sampled_free_skips(old) && hds_sampled_countdown_skips(size);
}
HDS_HIDDEN uint64_t hds_live_resident(void);
/* Release resident pages of the map that hold no block; returns bytes
 * released.  From the writer thread only (one reclaimer at a time). */
HDS_HIDDEN uint64_t hds_live_reclaim(void);
/* The child after fork: a reclaim under way in the parent is gone. */
HDS_HIDDEN void hds_live_after_fork(void);
/* Call fn for every block of the small map, in address order / of the
 * large table, in no order; return how many.  Only while every other
 * thread is stopped outside the shim (reach.c). */
HDS_HIDDEN uint64_t hds_live_each_small(void (*fn)(void *ctx, uintptr_t addr, uint64_t entry), void *ctx);
HDS_HIDDEN uint64_t hds_large_each(void (*fn)(void *ctx, uintptr_t addr, uint64_t entry), void *ctx);

static inline uint32_t hds_entry_stack(uint64_t e) { return (uint32_t)(e >> HDS_LIVE_SIZE_BITS) - 1; }
static inline uint64_t hds_entry_size(uint64_t e)  { return e & HDS_LIVE_MAX_SIZE; }
static inline int hds_entry_kind(uint64_t e)       { return (int)(e >> HDS_LIVE_KIND_SHIFT) & 3; }
static inline uint64_t hds_entry_payload(uint64_t e) { return e & HDS_LIVE_PAYLOAD_MAX; }
static inline uint64_t hds_live_payload(uint64_t size, int kind)
{
	return size | (uint64_t)kind << HDS_LIVE_KIND_SHIFT;
}

/* ---- blocks_large.c: live blocks of 4 KiB and more (live.c's helper) ---- */

HDS_HIDDEN int hds_large_init(void);
HDS_HIDDEN uint64_t hds_large_insert(const void *p, uint32_t stack_id, uint64_t payload);
HDS_HIDDEN uint64_t hds_large_remove(const void *p);
HDS_HIDDEN uint64_t hds_large_resident(void);
HDS_HIDDEN uint64_t hds_large_reclaim(void);
HDS_HIDDEN void hds_large_after_fork(void);

/* ---- python.c: CPython's frames in the stacks ----------------------------- */

/* The eval loop's code, [lo, hi); empty when Python frames are off. */
HDS_HIDDEN extern uintptr_t hds_eval_lo, hds_eval_hi;
static inline int hds_is_eval(uintptr_t ra)
{
	return ra - 1 - hds_eval_lo < hds_eval_hi - hds_eval_lo;
}

/* At start-up: find CPython 3.11's eval loop and thread state in this
 * process (nothing happens for other programs). */
HDS_HIDDEN void hds_python_init(void);
HDS_HIDDEN int hds_python_enabled(void);
/* The stack in[0..n) with each eval-loop frame replaced by the Python
 * frames it runs, into out[0..max) (*truncated set when cut): returns its
 * depth and sets *chain to its hash (intern it with that, whatever its
 * value), or returns -1 when in has no Python frames (in and *chain
 * stand).  *chain on entry: in's chain from hds_capture, 0 if none. */
HDS_HIDDEN int hds_python_splice(const uintptr_t *in, int n, uintptr_t *out, int max, int *truncated,
				 uint64_t *chain);
/* Code objects seen so far (ids 0 .. n-1), and one's CODE record (buf
 * NULL: only its size). */
HDS_HIDDEN uint32_t hds_python_ncodes(void);
HDS_HIDDEN size_t hds_python_encode_code(uint32_t id, unsigned char *buf);
HDS_HIDDEN uint64_t hds_python_resident(void);

/* ---- jit.c: names of JIT-compiled code, from the runtime's perf map --------- */

/* The JIT section's payload (format/FORMAT.md) for return addresses
 * addrs[0..n), each outside every module: the entries of /tmp/perf-PID.map
 * as it is now that cover them, the last line covering an address being
 * its entry.  Returns memory from hds_map() (*len bytes used; give back
 * *cap bytes with hds_unmap), or NULL (*len 0) when there is no map we may
 * use, no entry covers any of them, or memory is short.  Async-signal-safe. */
HDS_HIDDEN unsigned char *hds_jit_encode(const uint64_t *addrs, size_t n, size_t *len, size_t *cap);
/* Nonzero when this process has a perf map (one system call): without
 * one, nothing is looked for. */
HDS_HIDDEN int hds_jit_map_exists(void);

/* ---- modules.c: the module map ------------------------------------------ */

HDS_HIDDEN int hds_modules_init(void);
/* Bring the map up to date with the loader (dl_iterate_phdr), marking
 * modules that went away as unloaded.  With wait == 0 it gives up when
 * another thread is refreshing.  Never called with a shim lock held. */
HDS_HIDDEN void hds_modules_refresh(int wait);
/* Nonzero when addr lies in a module the map knows as loaded. */
HDS_HIDDEN int hds_modules_contains(uintptr_t addr);
/* Nonzero when one of frames[0..depth) lies in a module loaded or unloaded
 * after map epoch `since`. */
HDS_HIDDEN int hds_modules_changed(uint32_t since, const uintptr_t *frames, int depth);
/* Encode the MODULE_EPOCHS payload of the first n modules (NULL: only
 * measure); returns bytes. */
HDS_HIDDEN size_t hds_modules_encode_epochs(unsigned char *buf, size_t cap, uint32_t n);
/* Modules in the map now; the two encoders take this n, so that MODULES
 * and MODULE_EPOCHS describe the same modules. */
HDS_HIDDEN uint32_t hds_modules_count(void);
/* Encode the MODULES payload of the first n modules into buf (NULL: only
 * measure); returns bytes. */
HDS_HIDDEN size_t hds_modules_encode(unsigned char *buf, size_t cap, uint32_t n);
HDS_HIDDEN uint64_t hds_modules_resident(void);
/* The child after fork: a refresh the parent had under way is gone. */
HDS_HIDDEN void hds_modules_after_fork(void);

/* ---- triggers.c: when snapshots are written --------------------------------- */

/* Start the writer thread and install the snapshot signal (constructor, and
 * the child after fork). */
HDS_HIDDEN void hds_triggers_start(void);
/* Stop the writer thread and wait for it (before the program changes its
 * credentials: glibc applies a setuid in every thread, and fails the whole
 * call if one thread cannot follow, e.g. when capabilities were kept in the
 * calling thread only); start it again afterwards, with the new ones. */
HDS_HIDDEN void hds_writer_pause(void);
HDS_HIDDEN void hds_writer_resume(void);
/* The child after fork: new pid, sequence from 1, writer thread restarted. */
HDS_HIDDEN void hds_triggers_after_fork(void);
/* Write the exit snapshot once per process: from the destructor (exit,
 * return from main) or from _exit/_Exit (from_exit_call = 1, which
 * skips a vfork child and does nothing that is not async-signal-safe). */
HDS_HIDDEN void hds_snapshot_at_exit(int from_exit_call);

/* ---- snapshot.c: writing one snapshot file --------------------------------- */

/* Write one snapshot now, in this thread.  refresh == 0: do not ask the
 * loader for new modules (the _exit path, which may run in a signal
 * handler; the map already holds every module a recorded frame lies in).
 * 0 on success, -1 on failure (warned about once). */
HDS_HIDDEN int hds_snapshot_write(int trigger, const char *label, int refresh);
/* OUTDIR PREFIX PID.SEQ.TRIGGER SUFFIX into out (4400 bytes). */
HDS_HIDDEN void hds_snapshot_name(char *out, const char *prefix, uint64_t n, const char *trig, const char *suffix);
/* Nonzero while some thread is writing a snapshot. */
HDS_HIDDEN int hds_snapshot_writing(void);
/* The live bytes a snapshot would report now, from the stacks' counters:
 * 0, or -1 when no memory could be mapped for the sums. */
HDS_HIDDEN int hds_snapshot_live_bytes(int64_t *live);
/* The child after fork: its sequence starts again, as a new run. */
HDS_HIDDEN void hds_snapshot_after_fork(void);
/* At start-up: a run id, an empty chain. */
HDS_HIDDEN void hds_snapshot_new_run(void);

/* ---- thin.c: HEAPDELTA_KEEP, at most N interval snapshots on disk ----------- */

/* Before writing a snapshot of `trigger`, with the chain lock held: if it
 * is an interval snapshot and HEAPDELTA_KEEP are on disk already, merge
 * one into its successor and delete it. */
HDS_HIDDEN void hds_thin_before_write(int trigger);
/* After snapshot seq completed, with the chain lock held: remember it. */
HDS_HIDDEN void hds_thin_after_write(int trigger, uint64_t seq);
/* A new run (fork child): forget the files of the old one. */
HDS_HIDDEN void hds_thin_forget(void);

/* ---- reach.c: reachability of the live blocks at exit ----------------------- */

/* The classification for the exit snapshot's REACH section. */
struct hds_reach {
	uint32_t status;          /* enum hd_reach_status */
	uint32_t threads;         /* threads stopped */
	uint64_t ns, root_bytes, block_bytes;
	uint64_t *kinds;          /* per stack id: bytes, count of each enum hd_reach_kind */
	uint32_t nstacks;
	int sig;                  /* the signal the threads are stopped with; 0: none */
	struct sigaction old;     /* its disposition before */
};
HDS_HIDDEN extern struct hds_reach hds_reach;

/* Nonzero while this thread must not be stopped by the scan: it is in a
 * stretch where the tables and counters disagree, or holds a shim lock,
 * outside the shim's own code (a system call made by the shim). */
HDS_HIDDEN extern __thread int hds_tl_nopark __attribute__((tls_model("initial-exec")));
/* The block a realloc has taken out of the live map while the real
 * realloc runs (and its entry): still the program's until that returns. */
HDS_HIDDEN extern __thread void *hds_tl_inflight __attribute__((tls_model("initial-exec")));
HDS_HIDDEN extern __thread uint64_t hds_tl_inflight_entry __attribute__((tls_model("initial-exec")));

/* Stop the other threads and classify every live block into hds_reach
 * (its status says why not, when it returns -1).  On 0 the threads stay
 * stopped until hds_reach_resume(): write the exit snapshot in between. */
HDS_HIDDEN int hds_reach_exit(void);
HDS_HIDDEN void hds_reach_resume(void);
/* From the writer thread at its start: the size of a thread's TCB. */
HDS_HIDDEN void hds_reach_note_thread(void);

#endif /* HDS_INTERNAL_H */
