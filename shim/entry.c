/*
 * entry.c - the interposed allocation functions.
 *
 * Every function here forwards to the real allocator (glibc's unless the
 * program loaded another) and mirrors its outcome in the tables, so that the
 * recorded live set is exactly what the allocator holds:
 *  - a block enters the live table after the real call returned it, and
 *    leaves it *before* the real free, so another thread cannot be handed
 *    the same address and insert it before our removal;
 *  - a failed call records nothing (a failed realloc leaves the old block
 *    live, so its entry goes back);
 *  - errno is what the real call left, whatever recording did.
 *
 * Hot path cost: one TLS read and write for the re-entrancy guard, one
 * stack capture, one intern lookup (a hit, nearly always), one live-table
 * store, and plain adds to this thread's counters of the stack (threads.c).
 */
#include "internal.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>


__thread struct hds_tl_entry hds_tl_entry __attribute__((tls_model("initial-exec")));

/* Is this call to be recorded?  Runs init on the very first call, which may
 * come before any constructor (C++ runtimes allocate early). */
static inline int hds_enter(void)
{
	int st = atomic_load_relaxed(&hds.state);

	if (likely(st == HDS_ACTIVE))
		return !hds_busy;
	if (st == HDS_UNINIT && !hds_busy) {
		hds_init_core();
		return atomic_load_acquire(&hds.state) == HDS_ACTIVE;
	}
	return 0;
}

static inline int hds_tables_ready(void)
{
	return atomic_load_relaxed(&hds.state) == HDS_ACTIVE;
}

/*
 * Blocks handed out before the real allocator is known come from glibc's
 * __libc_* entry points.  When the program's allocator turns out to be
 * another (jemalloc, tcmalloc), such a block must go back to glibc, not to
 * it: they are remembered here (there are a handful, from dlsym).
 */
#define BOOT_MAX 64
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void  __libc_free(void *);
extern void *__libc_realloc(void *, size_t);
static void *boot_ptrs[BOOT_MAX];
static _Atomic int boot_n;

static void boot_remember(void *p)
{
	int n = atomic_load_relaxed(&boot_n);
	if (p && n < BOOT_MAX) {
		boot_ptrs[n] = p;
		atomic_store_release(&boot_n, n + 1);
	}
}

/* Is p a bootstrap block of glibc's, while the real allocator is another?
 * Then forget it and return 1. */
static int boot_owned(void *p)
{
	int n = atomic_load_acquire(&boot_n);

	if (likely(!n) || !hds.foreign_malloc)
		return 0;
	for (int i = 0; i < n; i++)
		if (boot_ptrs[i] == p) {
			boot_ptrs[i] = NULL;
			return 1;
		}
	return 0;
}

static inline int booting(void)
{
	return atomic_load_relaxed(&hds.state) != HDS_ACTIVE && atomic_load_relaxed(&hds.state) != HDS_PASSIVE;
}

/*
 * Sampled mode (HEAPDELTA_SAMPLE=R): each thread counts bytes down from a
 * distance drawn from an exponential distribution of mean R; the
 * allocation that crosses zero is recorded, the others cost a subtraction.
 * A recorded block of `size` bytes stands for 1/(1 - exp(-size/R)) blocks
 * (its sampling probability's inverse), so its stack is charged that many
 * blocks and that many times its bytes: unbiased estimates.  The live map
 * keeps the real size, so the free computes the very same weights and
 * takes back exactly what was added.
 */
static __thread uint64_t tl_sample_rng __attribute__((tls_model("initial-exec")));

static _Atomic uint64_t sample_threads;

static int64_t sample_distance(void)
{
	if (!tl_sample_rng)   /* seeded per thread, the same way every run */
		tl_sample_rng = 0x9e3779b97f4a7c15u * (atomic_add_relaxed(&sample_threads, 1) + 1);
	tl_sample_rng ^= tl_sample_rng << 13;
	tl_sample_rng ^= tl_sample_rng >> 7;
	tl_sample_rng ^= tl_sample_rng << 17;
	double u = ((double)(tl_sample_rng >> 11) + 0.5) / 9007199254740992.0;   /* (0, 1) */
	return (int64_t)(-log(u) * (double)hds.cfg.sample_bytes) + 1;
}

/* Should this allocation be recorded?  Always, unless sampling. */
static inline int sample_this(uint64_t size)
{
	if (likely(!hds.cfg.sample_bytes))
		return 1;
	if (unlikely(hds_tl_sample_left == 0))
		hds_tl_sample_left = sample_distance();
	hds_tl_sample_left -= (int64_t)size;
	if (likely(hds_tl_sample_left > 0))
		return 0;
	hds_tl_sample_left = sample_distance();
	return 1;
}

/* What a recorded block of `size` bytes counts for: bytes and blocks. */
static inline void weights(uint64_t size, uint64_t *bytes, uint64_t *count)
{
	if (likely(!hds.cfg.sample_bytes)) {
		*bytes = size;
		*count = 1;
		return;
	}
	double w = 1.0 / -expm1(-(double)(size ? size : 1) / (double)hds.cfg.sample_bytes);
	*bytes = (uint64_t)llround((double)size * w);
	*count = (uint64_t)llround(w * HDS_SAMPLED_COUNT_SCALE);   /* fixed point: no rounding bias */
}

/* Take a block's bytes and count off its stack and the process totals. */
void hds_uncount(uint64_t entry)
{
	uint64_t bytes, count;

	weights(hds_entry_size(entry), &bytes, &count);
	hds_count(hds_entry_stack(entry), -(int64_t)bytes, -(int64_t)count, 0, 0);
	hds_total_add(-(int64_t)bytes);
}

static void record_alloc(void *p, uint64_t size, int kind, const void *entry);

void hds_record_alloc(void *p, uint64_t size, int kind, const void *entry)
{
	if (sample_this(size))
		record_alloc(p, size, kind, entry);
}

/* Record block p of `size` requested bytes, attributed to the caller's stack.
 * `entry` is the frame of the interposed function the program called (every
 * exported function passes its own __builtin_frame_address(0); this file is
 * built with frame pointers).  Called with hds_busy set. */
static __attribute__((noinline)) void record_alloc(void *p, uint64_t size, int kind, const void *entry)
{
	uintptr_t buf[HDS_CAPTURE_ROOM], spliced[HD_MAX_DEPTH];
	const uintptr_t *frames;
	int truncated = 0, fresh = 0;
	uint64_t chain = 0;
	int depth = hds_capture(buf, &frames, hds.cfg.depth, &truncated, entry, &chain);
	if (hds_python_enabled()) {
		int m = hds_python_splice(frames, depth, spliced, HD_MAX_DEPTH, &truncated, &chain);
		if (m >= 0) {
			frames = spliced;
			depth = m;
		}
	}
	unsigned flags = truncated ? HD_STACK_TRUNCATED : 0;
	uint32_t known = frames != spliced ? hds_capture_known_stack() : 0;
	int64_t id = (int64_t)known - 1;
	if (!known) {
		id = chain || frames == spliced ? hds_stack_intern_chain(frames, depth, flags, chain, &fresh)
						: hds_stack_intern(frames, depth, flags, &fresh);
		if (id >= 0 && frames != spliced)
			hds_capture_note_stack((uint32_t)id);
	}
	uint64_t old;

	/* A new stack may run through a library loaded since the module map
	 * was last refreshed; catch it now, while it is surely still mapped. */
	for (int i = 0; fresh && i < depth; i++)
		if (!hds_modules_contains(frames[i])) {
			hds_modules_refresh(0);
			break;
		}

	if (id < 0 || size > HDS_LIVE_MAX_SIZE) {
		atomic_add_relaxed(&hds.dropped_allocs, 1);
		return;
	}
	old = hds_live_insert(p, (uint32_t)id, hds_live_payload(size, kind));
	if (old == UINT64_MAX) {
		atomic_add_relaxed(&hds.dropped_allocs, 1);
		return;
	}
	if (old)   /* the slot held a block whose free we never saw */
		hds_uncount(old);

	uint64_t bytes, count;
	weights(size, &bytes, &count);
	hds_count((uint32_t)id, (int64_t)bytes, (int64_t)count, (int64_t)bytes, (int64_t)count);
	hds_total_add((int64_t)bytes);
}

/* The block at p is about to be released (free, or realloc that moves or
 * frees it): remove it from the live table and return its entry, or 0 when
 * it was never recorded.  Removal is one atomic exchange, safe even when
 * re-entered from inside the shim, so it is done whether or not this call
 * records: a tracked block freed by the loader while we are busy must leave.
 * Only frees by the program (not by the shim's own callees) count as
 * unknown. */
uint64_t hds_forget(void *p, int by_program)
{
	uint64_t e;

	if (!hds_tables_ready() || !hds_live_maybe(p))   /* sampled: p was never recorded */
		return 0;
	e = hds_live_remove(p);
	if (!e && by_program && !hds.cfg.sample_bytes)   /* sampled: most blocks are not in the map */
		atomic_add_relaxed(&hds.unknown_frees, 1);
	return e;
}

/*
 * Mismatched releases: a block of new given to free or delete[], of new[]
 * to free or delete, of malloc to delete or delete[].  Each is counted; the
 * first HDS_MISMATCH_MAX are kept with the releasing stack (captured here,
 * on this rare path) and the allocating stack's id, for the snapshot.  A
 * slot is claimed by fetch-add and published with `ready` (release), so a
 * snapshot lists only complete records.
 */
struct mismatch {
	_Atomic int ready;
	uint32_t alloc_stack;
	uint8_t alloc_kind, free_kind;
	uint16_t depth;
	uint64_t size;
	uintptr_t frames[HD_MAX_DEPTH];
};

static struct mismatch *mismatches;   /* HDS_MISMATCH_MAX, mapped on first use */
static _Atomic uint32_t nmismatches;

void hds_note_mismatch(uint64_t e, int free_kind, const void *entry)
{
	atomic_add_relaxed(&hds.mismatched_frees, 1);
	uint32_t i = atomic_add_relaxed(&nmismatches, 1);
	if (i >= HDS_MISMATCH_MAX)
		return;
	if (!mismatches) {
		struct mismatch *m = hds_map(sizeof *m * HDS_MISMATCH_MAX), *expected = NULL;
		if (!m)
			return;
		if (!__atomic_compare_exchange_n(&mismatches, &expected, m, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			hds_unmap(m, sizeof *m * HDS_MISMATCH_MAX);   /* another thread's won; ours was never seen */
	}
	struct mismatch *m = &__atomic_load_n(&mismatches, __ATOMIC_ACQUIRE)[i];
	uintptr_t buf[HDS_CAPTURE_ROOM];
	const uintptr_t *frames;
	int truncated = 0;
	uint64_t chain;
	m->depth = (uint16_t)hds_capture(buf, &frames, hds.cfg.depth, &truncated, entry, &chain);
	memcpy(m->frames, frames, sizeof *frames * m->depth);
	m->alloc_stack = hds_entry_stack(e);
	m->alloc_kind = (uint8_t)hds_entry_kind(e);
	m->free_kind = (uint8_t)free_kind;
	m->size = hds_entry_size(e);
	atomic_store_release(&m->ready, 1);
}

size_t hds_mismatches_encode(unsigned char *buf, size_t cap)
{
	struct mismatch *all = __atomic_load_n(&mismatches, __ATOMIC_ACQUIRE);
	uint32_t n = atomic_load_relaxed(&nmismatches), listed = 0;
	size_t need = 4;
	unsigned char *p = buf ? buf + 4 : NULL;

	if (n > HDS_MISMATCH_MAX)
		n = HDS_MISMATCH_MAX;
	for (uint32_t i = 0; all && i < n; i++) {
		const struct mismatch *m = &all[i];
		if (!atomic_load_acquire(&m->ready))
			continue;
		size_t len = 4 + 1 + 1 + 2 + 8 + 8 * (size_t)m->depth;
		need += len;
		if (!buf || need > cap)
			continue;
		p = hd_put_u32(p, m->alloc_stack);
		*p++ = m->alloc_kind;
		*p++ = m->free_kind;
		p = hd_put_u16(p, m->depth);
		p = hd_put_u64(p, m->size);
		for (int k = 0; k < m->depth; k++)
			p = hd_put_u64(p, m->frames[k]);
		listed++;
	}
	if (buf && need <= cap)
		hd_put_u32(buf, listed);
	return need;
}

/* Common tail of every allocating entry point.  `outer` is hds_busy as the
 * call found it: HDS_BUSY_FORWARD under a C++ operator new that records the
 * block itself (entry_cxx.c), so not an untracked allocation. */
static inline void *hds_after_alloc(void *p, uint64_t size, int record, int outer, const void *entry)
{
	if (p) {
		int saved = errno;
		if (!record) {
			if (hds_tables_ready() && outer != HDS_BUSY_FORWARD)
				atomic_add_relaxed(&hds.untracked_allocs, 1);
		} else if (sample_this(size)) {
			record_alloc(p, size, HDS_KIND_MALLOC, entry);
		}
		errno = saved;
	}
	return p;
}

/* The common case: the shim is active and this thread is not inside it. */
static inline int hds_fast(void)
{
	return likely(atomic_load_relaxed(&hds.state) == HDS_ACTIVE) && likely(!hds_busy);
}

/* The general path: start-up, re-entry, bootstrap blocks. */
static __attribute__((noinline)) void *malloc_general(size_t size, const void *entry)
{
	int record = hds_enter();
	int outer = hds_busy;
	void *p;

	hds_busy = 1;
	void *(*fn)(size_t) = hds.real.malloc;
	p = fn(size);
	if (unlikely(booting()) && fn == __libc_malloc)
		boot_remember(p);
	hds_after_alloc(p, size, record, outer, entry);
	hds_busy = outer;
	return p;
}

/* The end of a fast-path allocation that records: record p (keeping the
 * allocator's errno) and leave the shim. */
static inline void *record_and_leave(void *p, uint64_t size, const void *entry)
{
	if (p) {
		int saved = errno;
		record_alloc(p, size, HDS_KIND_MALLOC, entry);
		errno = saved;
	}
	hds_busy = 0;
	return p;
}

/* Allocate and record: the sampled (or, without sampling, every) call. */
static __attribute__((noinline)) void *malloc_record(size_t size, const void *entry)
{
	hds_busy = 1;
	return record_and_leave(hds.real.malloc(size), size, entry);
}

/*
 * The fast paths below run when the shim is active, this thread is not
 * inside it, and the allocator is glibc's (which never calls back into
 * malloc): an allocation that is not to be recorded goes straight to the
 * real function as a tail call, and so does the free of a block that was
 * never recorded.
 */
static __attribute__((noinline)) void *malloc_full(size_t size)
{
	if (unlikely(!hds_fast() || hds.foreign_malloc))
		return malloc_general(size, __builtin_frame_address(0));
	if (!sample_this(size))
		return hds.real.malloc(size);
	return malloc_record(size, __builtin_frame_address(0));
}

/* Sampled mode's common case first, without a frame (as entry_cxx.c's
 * operators); the rest by a tail call to malloc_full, whose frame is then
 * the one under the program's, as every entry point's. */
HDS_EXPORT HDS_FRAMELESS void *malloc(size_t size)
{
	if (hds_sampled_alloc_skips(size))
		return hds.real.malloc(size);
	return malloc_full(size);
}

static __attribute__((noinline)) void free_general(void *p, const void *entry)
{
	int outer = hds_busy;
	int saved;

	hds_busy = 1;
	saved = errno;
	uint64_t e = outer && p == hds_tl_releasing ? 0 : hds_forget(p, !outer);
	if (e) {
		hds_uncount(e);   /* first: the mismatch's capture may leave the shim's code */
		if (hds_entry_kind(e) != HDS_KIND_MALLOC && !outer)
			hds_note_mismatch(e, HDS_KIND_MALLOC, entry);
	}
	errno = saved;
	if (unlikely(boot_owned(p)))
		__libc_free(p);
	else
		hds.real.free(p);
	hds_busy = outer;
}

/*
 * Which map can hold glibc block p, from its chunk header: the word before
 * the block is the chunk's size, low three bits flags (2: mmapped).  glibc
 * reads that word first thing in free, so reading it here faults exactly
 * when free would.  A chunk that is not mmapped holds the request and its
 * 8-byte size field, plus at most 15 bytes of rounding and a remainder too
 * small to split off (under 32 bytes, after memalign or an in-place
 * realloc): request + 8 <= chunk < request + 56.  So a chunk under 4104
 * bytes held a request under 4 KiB, one of 4160 or more a request of at
 * least 4 KiB, and between the two, or for mmapped chunks (whose size is
 * rounded to pages), both maps are searched.  Saves a free the probe of the
 * map its block cannot be in.
 */
static inline unsigned glibc_block_maps(const void *p)
{
	size_t head = ((const size_t *)p)[-1];
	size_t chunk = head & ~(size_t)7;

	if (head & 2)
		return HDS_LIVE_FINE | HDS_LIVE_COARSE;
	if (chunk < HDS_LIVE_BLOCK + 8)
		return HDS_LIVE_FINE;
	if (chunk >= HDS_LIVE_BLOCK + 64)
		return HDS_LIVE_COARSE;
	return HDS_LIVE_FINE | HDS_LIVE_COARSE;
}

/* Fast paths (glibc's allocator): take glibc block p out of the live map
 * before the real free and return its entry, or 0 when it was never
 * recorded.  In sampled mode most blocks were not, and hds_live_maybe
 * spares their frees the maps. */
static inline uint64_t forget_glibc_block(const void *p)
{
	return hds_live_maybe(p) ? hds_live_remove_in(p, glibc_block_maps(p)) : 0;
}

/* A block of new or new[] given to free (or realloc): recorded with both
 * stacks.  Out of line, with hds_busy set: it captures a stack. */
static __attribute__((noinline)) void free_mismatch(uint64_t e, const void *entry)
{
	int saved = errno;

	hds_busy = 1;
	hds_note_mismatch(e, HDS_KIND_MALLOC, entry);
	hds_busy = 0;
	errno = saved;
}

static __attribute__((noinline)) void free_full(void *p)
{
	if (unlikely(!hds_fast() || hds.foreign_malloc)) {
		if (p)
			free_general(p, __builtin_frame_address(0));
		return;
	}
	if (p) {
		/* Out of the map before the real free; the map and the counters
		 * never touch errno nor allocate. */
		uint64_t e = forget_glibc_block(p);
		if (e) {
			hds_uncount(e);
			if (unlikely(hds_entry_kind(e) != HDS_KIND_MALLOC))
				free_mismatch(e, __builtin_frame_address(0));
		} else if (!hds.cfg.sample_bytes)
			atomic_add_relaxed(&hds.unknown_frees, 1);
	}
	hds.real.free(p);
}

/* Sampled mode: the free of a block never recorded goes straight to
 * glibc, inside the shim or not (free_full would do the same). */
HDS_EXPORT HDS_FRAMELESS void free(void *p)
{
	if (hds_sampled_free_skips(p)) {
		hds.real.free(p);
		return;
	}
	free_full(p);
}

/*
 * The C++ operators' common case (entry_cxx.c): the shim active, this
 * thread not inside it, glibc's malloc.  libstdc++'s operator new is
 * malloc(n ? n : 1) in a loop that calls the new-handler or throws when
 * malloc fails, and every operator delete is free: so new allocates with
 * the real malloc here and records the block with its family, and only
 * when that fails (or the fast path does not apply: NULL) is the real
 * operator called, to handle the failure as it would; delete releases
 * with the real free.  One interposed call per operation instead of the
 * operator's, then malloc's or free's, each through the shim.
 */
static __attribute__((noinline)) void *new_record(void *p, size_t n, int kind, const void *entry)
{
	int saved = errno;

	hds_busy = 1;
	record_alloc(p, n, kind, entry);
	hds_busy = 0;
	errno = saved;
	return p;
}

void *hds_new_fast(size_t n, int kind, const void *entry)
{
	if (unlikely(!hds_fast() || hds.foreign_malloc))
		return NULL;
	void *p = hds.real.malloc(n ? n : 1);
	if (likely(p) && sample_this(n))
		return new_record(p, n, kind, entry);
	return p;
}

static __attribute__((noinline)) void delete_mismatch(uint64_t e, int kind, const void *entry)
{
	int saved = errno;

	hds_busy = 1;
	hds_note_mismatch(e, kind, entry);
	hds_busy = 0;
	errno = saved;
}

int hds_delete_fast(void *p, int kind, const void *entry)
{
	if (unlikely(!hds_fast() || hds.foreign_malloc))
		return 0;
	if (p) {
		uint64_t e = forget_glibc_block(p);
		if (e) {
			hds_uncount(e);
			if (unlikely(hds_entry_kind(e) != kind))
				delete_mismatch(e, kind, entry);
		} else if (!hds.cfg.sample_bytes) {
			atomic_add_relaxed(&hds.unknown_frees, 1);
		}
	}
	hds.real.free(p);
	return 1;
}

static __attribute__((noinline)) void *calloc_general(size_t n, size_t m, const void *entry)
{
	int record = hds_enter();
	int outer = hds_busy;
	size_t total = 0;
	void *p;

	hds_busy = 1;
	void *(*fn)(size_t, size_t) = hds.real.calloc;
	p = fn(n, m);
	if (unlikely(booting()) && fn == __libc_calloc)
		boot_remember(p);
	if (p && __builtin_mul_overflow(n, m, &total))
		total = HDS_LIVE_MAX_SIZE + 1;  /* cannot happen with glibc; dropped */
	hds_after_alloc(p, total, record, outer, entry);
	hds_busy = outer;
	return p;
}

static __attribute__((noinline)) void *calloc_record(size_t n, size_t m, size_t total, const void *entry)
{
	hds_busy = 1;
	return record_and_leave(hds.real.calloc(n, m), total, entry);
}

static __attribute__((noinline)) void *calloc_full(size_t n, size_t m)
{
	size_t total;

	if (unlikely(!hds_fast() || hds.foreign_malloc))
		return calloc_general(n, m, __builtin_frame_address(0));
	if (__builtin_mul_overflow(n, m, &total) || !sample_this(total))
		return hds.real.calloc(n, m);   /* overflow: the real calloc fails it */
	return calloc_record(n, m, total, __builtin_frame_address(0));
}

/* Sampled mode's common case straight to glibc, as malloc's (an overflow
 * takes the full path, which leaves it to the real calloc). */
HDS_EXPORT HDS_FRAMELESS void *calloc(size_t n, size_t m)
{
	size_t total;

	if (!__builtin_mul_overflow(n, m, &total) && hds_sampled_alloc_skips(total))
		return hds.real.calloc(n, m);
	return calloc_full(n, m);
}

/* realloc and reallocarray after their argument checks. */
static void *hds_realloc(void *old, size_t size, const void *entry)
{
	int record = hds_enter();
	int outer = hds_busy;
	uint64_t e;
	void *p;
	int saved;

	hds_busy = 1;
	saved = errno;
	e = hds_forget(old, !outer);  /* before the real call: it may free old */
	if (e) {
		/* Out of the map but still counted until the real call returns:
		 * a thread the exit's scan stops in between reports it. */
		hds_tl_inflight_entry = e;
		hds_tl_inflight = old;
	}
	if (e && hds_entry_kind(e) != HDS_KIND_MALLOC && !outer)
		hds_note_mismatch(e, HDS_KIND_MALLOC, entry);
	errno = saved;
	p = unlikely(boot_owned(old)) ? __libc_realloc(old, size) : hds.real.realloc(old, size);
	saved = errno;
	if (!p && size) {
		/* Failed: old is still live, exactly as before. */
		if (e)
			hds_live_insert(old, hds_entry_stack(e), hds_entry_payload(e));
		hds_tl_inflight = NULL;
	} else {
		if (e)
			hds_uncount(e);
		hds_tl_inflight = NULL;
		if (p) {
			if (!record && outer != HDS_BUSY_FORWARD)
				atomic_add_relaxed(&hds.untracked_allocs, 1);
			else if (sample_this(size))
				record_alloc(p, size, HDS_KIND_MALLOC, entry);
		}
	}
	errno = saved;
	hds_busy = outer;
	return p;
}

static __attribute__((noinline)) void *realloc_full(void *old, size_t size)
{
	if (!old)
		return malloc(size);
	return hds_realloc(old, size, __builtin_frame_address(0));
}

/* Sampled mode's common case straight to glibc, as malloc's. */
HDS_EXPORT HDS_FRAMELESS void *realloc(void *old, size_t size)
{
	if (hds_sampled_realloc_skips(old, size))
		return hds.real.realloc(old, size);
	return realloc_full(old, size);
}

HDS_EXPORT void *reallocarray(void *old, size_t n, size_t m)
{
	size_t total;

	if (__builtin_mul_overflow(n, m, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	if (!old)
		return malloc(total);
	return hds_realloc(old, total, __builtin_frame_address(0));
}

/*
 * The rest of the family returns a block or NULL, like malloc, and goes
 * through the same steps; `size` is what the program asked for (pvalloc's
 * page rounding is the allocator's business).  The frame address must be
 * the exported function's own, hence a macro rather than a helper.
 */
#define HDS_ALLOC_ENTRY(name, params, call, size)                                  \
	HDS_EXPORT void *name params                                               \
	{                                                                          \
		int record = hds_enter();                                          \
		int outer = hds_busy;                                              \
		hds_busy = 1;                                                      \
		void *p = hds.real.call;                                           \
		hds_after_alloc(p, size, record, outer, __builtin_frame_address(0)); \
		hds_busy = outer;                                                  \
		return p;                                                          \
	}

HDS_ALLOC_ENTRY(memalign, (size_t align, size_t size), memalign(align, size), size)
HDS_ALLOC_ENTRY(aligned_alloc, (size_t align, size_t size), aligned_alloc(align, size), size)
HDS_ALLOC_ENTRY(valloc, (size_t size), valloc(size), size)
HDS_ALLOC_ENTRY(pvalloc, (size_t size), pvalloc(size), size)

HDS_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	int record = hds_enter();
	int outer = hds_busy;
	int rc;

	hds_busy = 1;
	rc = hds.real.posix_memalign(out, align, size);
	if (rc == 0)
		hds_after_alloc(*out, size, record, outer, __builtin_frame_address(0));
	hds_busy = outer;
	return rc;
}

/*
 * _exit and _Exit skip destructors, so the exit snapshot is written here.
 * Programs such as dash end this way; a signal handler may too, so this
 * path is async-signal-safe (see hds_snapshot_at_exit).
 */
static __attribute__((noreturn)) void hds_exit_now(int status)
{
	if (atomic_load_acquire(&hds.state) == HDS_ACTIVE)
		hds_snapshot_at_exit(1);
	for (;;)
		syscall(SYS_exit_group, status);
}

HDS_EXPORT void _exit(int status)
{
	hds_exit_now(status);
}

HDS_EXPORT void _Exit(int status)
{
	hds_exit_now(status);
}
