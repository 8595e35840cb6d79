/*
 * blocks_large.c - live blocks of 4 KiB and more, by address (live.c holds
 * the smaller ones and sends these here): a lock-free open-addressing hash
 * table from a block's address to its entry (stack id + 1, family,
 * requested size), resized by copying into a new table while everyone
 * keeps going.
 *
 * Workload: one insert per recorded large allocation and one remove per
 * free of one (and per free of an unknown pointer).  Large blocks are
 * few next to small ones, and far apart: a direct index would cost a page
 * of slots for most of them.  Here memory follows their number: a slot is
 * 16 bytes, a table is made 1/3 to 2/3 full and grows at 3/4, so 21 to 48
 * bytes per live large block (64 KiB at least), more for the moment a
 * resize copies one table into the next.
 *
 * Why so few rules are enough: an address is live at most once, and only
 * the thread holding the pointer touches its key: the allocating thread
 * inserts it after the real allocator returned it, the freeing thread
 * removes it before the real free (entry.c).  No two threads ever insert
 * or remove one key at once.  The only one that touches a slot it does not
 * own is the copier.
 *
 * A slot: key (the address; EMPTY, TOMB for a removed block, MOVED_EMPTY
 * and MOVED_FULL once copied away, or the address with MOVING set while
 * the copier copies it) and val (the entry, never 0 once published).
 *  - insert: probe from the address's hash up to an EMPTY slot (a stale
 *    entry for the same address, from a free we never saw, is replaced
 *    and returned), then claim the first EMPTY or TOMB slot with a CAS of
 *    the key to address|PENDING, store val, and publish the bare address
 *    (release).  A reused slot still holds its last val, so only the key
 *    says whether val is ours.  If the table was replaced meanwhile, the
 *    insert gives its slot up and goes to the new table;
 *  - remove: probe until EMPTY or MOVED_EMPTY; at the key, read val, then
 *    CAS the key to TOMB: the block and its entry are ours;
 *  - copy (resize): for each slot, CAS EMPTY -> MOVED_EMPTY or TOMB ->
 *    MOVED_FULL, so no insert lands there any more; for a live key, wait
 *    while it is PENDING, CAS key -> key|MOVING (the remover's CAS then fails), insert
 *    the entry into the new table, and set MOVED_FULL.  A remover that
 *    finds MOVING waits for MOVED_FULL and looks in the new table.
 * Removes look in every table from the oldest still being copied to the
 * newest; inserts go to the newest only.
 *
 * Resizes: when an insert finds the newest table 3/4 used (live entries
 * and tombstones), or the writer thread finds it under 1/8 live, a new
 * table of 3 to 6 times the live entries is made (room for the inserts
 * that come while it is being filled); every insert and remove
 * then copies a chunk of the old one, and the writer thread copies what is
 * left, so the copy never waits for anyone.  Only one copy runs at a time.
 * The old table's pages are given back to the kernel (MADV_DONTNEED) once
 * copied: a stale reader then sees EMPTY there and moves on to the next
 * table, and a stale insert into it takes itself back.  Every operation is
 * a read-side critical section (hds_read_begin: two plain stores), and the
 * writer thread unmaps a retired table's array and frees its header (one
 * of 64) only after a grace period (hds_rcu_synchronize), when no thread
 * can still hold a pointer to it; when all 64 are in use, the insert that
 * needed one does that itself, after its own read section.  Without
 * membarrier (old kernels) nothing is ever unmapped (the pages are given
 * back all the same), and once the 64 headers are used tables stop
 * resizing: inserts that find no room are counted as dropped.
 *
 * Counting: inserts and removes count live entries and used slots per
 * thread, flushed to the table every 32, so no cache line is shared on the
 * hot path; the estimates err by at most 32 per thread.
 *
 * Fork: a copy under way in the parent is finished in the child, alone,
 * before anything else; a key claimed by an insert that fork cut short
 * (val never published) is a tombstone there.
 *
 * Full: a block above 2^47, or a table that cannot grow (no memory), is not
 * recorded (the caller counts a dropped allocation).
 */
#include "internal.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#define ADDR_BITS     47
#define K_EMPTY       UINT64_C(0)
#define K_TOMB        UINT64_C(1)
#define K_MOVED_EMPTY UINT64_C(2)
#define K_MOVED_FULL  UINT64_C(3)
#define K_MOVING      (UINT64_C(1) << 63)   /* the copier is moving this key */
#define K_PENDING     (UINT64_C(1) << 62)   /* claimed by an insert, val not yet published */
#define MIN_SLOTS     UINT64_C(4096)     /* 64 KiB */
#define CHUNK         256                /* slots copied per claim */
#define RING          64                 /* table headers */
#define BATCH         32                 /* per-thread counts before a flush */

struct slot {
	_Atomic uint64_t key;
	_Atomic uint64_t val;
};

struct table {
	_Atomic int state;              /* T_FREE, T_LIVE, T_RETIRED (copied, awaiting a grace period) */
	struct slot *slots;
	uint64_t mask;
	size_t bytes;                   /* of the slot array */
	_Atomic(struct table *) next;   /* the table this one is copied into */
	_Atomic int64_t used;           /* slots holding or having held a key */
	_Atomic int64_t live;           /* entries */
	_Atomic uint64_t claimed;       /* chunks handed to copiers */
	_Atomic uint64_t copied;        /* chunks done */
	uint64_t nchunks;
};

enum { T_FREE, T_LIVE, T_RETIRED };

static struct table headers[RING];
static _Atomic(struct table *) newest, oldest;
static _Atomic int resizing;            /* a new table is being made */
static _Atomic int headers_short;       /* a resize found no free header */

static __thread struct table *tl_count_table __attribute__((tls_model("initial-exec")));
static __thread int32_t tl_used, tl_live __attribute__((tls_model("initial-exec")));

/*
 * Where a probe starts: blocks close in memory go to slots close in the
 * table.  Each run of GROUP granules of 4 KiB maps to GROUP consecutive
 * slots (one cache line) at a scrambled place, the block's granule picking
 * the slot in it; a group holds at most GROUP blocks, so runs stay short.
 * (A plain hash of the address made the table twice as costly per
 * operation, measured on python3's heap.)
 */
#define GROUP 4
static const unsigned granule = 8;   /* blocks here start at least 256 bytes apart */

static inline uint64_t hash(uint64_t p)
{
	uint64_t g = p >> (granule + 2);   /* log2(GROUP) */

	g *= UINT64_C(0x9e3779b97f4a7c15);
	return (g ^ (g >> 29)) * GROUP + ((p >> granule) & (GROUP - 1));
}

static inline void pause_briefly(unsigned *spins)
{
	if (++*spins > 64)
		sched_yield();
}

/* ---- counts ------------------------------------------------------------ */

static void counts_flush(void)
{
	struct table *t = tl_count_table;

	if (t) {
		atomic_add_relaxed(&t->used, tl_used);
		atomic_add_relaxed(&t->live, tl_live);
	}
	tl_used = tl_live = 0;
}

static inline void count(struct table *t, int used, int live)
{
	if (unlikely(tl_count_table != t)) {
		counts_flush();
		tl_count_table = t;
	}
	tl_used += used;
	tl_live += live;
	if (unlikely(tl_used >= BATCH || tl_live >= BATCH || tl_live <= -BATCH))
		counts_flush();
}

/* ---- tables ------------------------------------------------------------ */

/* A free header with a fresh slot array; NULL when every header is in use
 * or retired (the writer thread frees retired ones) or memory is short. */
static struct table *table_new(uint64_t nslots)
{
	struct table *t = NULL;

	for (int i = 0; i < RING && !t; i++) {
		int expected = T_FREE;
		if (atomic_cas_acq_rel(&headers[i].state, &expected, T_LIVE))
			t = &headers[i];
	}
	if (!t)
		return NULL;
	size_t bytes = sizeof(struct slot) * nslots;
	struct slot *s = hds_map(bytes);
	if (!s) {
		atomic_store_release(&t->state, T_FREE);
		return NULL;
	}
	if (bytes >= (UINT64_C(2) << 20))
		madvise(s, bytes, MADV_HUGEPAGE);   /* fewer TLB misses, where the kernel has them */
	t->slots = s;
	t->bytes = bytes;
	t->mask = nslots - 1;
	atomic_store_relaxed(&t->next, NULL);
	atomic_store_relaxed(&t->used, 0);
	atomic_store_relaxed(&t->live, 0);
	atomic_store_relaxed(&t->claimed, 0);
	atomic_store_relaxed(&t->copied, 0);
	t->nchunks = (nslots + CHUNK - 1) / CHUNK;
	return t;
}

int hds_large_init(void)
{
	for (int i = 0; i < RING; i++) {   /* (again, in the unit tests) */
		if (headers[i].slots)
			hds_unmap(headers[i].slots, headers[i].bytes);
		headers[i].slots = NULL;
		atomic_store_relaxed(&headers[i].state, T_FREE);
	}
	struct table *t = table_new(MIN_SLOTS);

	if (!t)
		return -1;
	atomic_store_release(&newest, t);
	atomic_store_release(&oldest, t);
	atomic_store_relaxed(&resizing, 0);
	return 0;
}

static void help_copy(struct table *t, uint64_t max_chunks);

/* Put (p, v) into table t, the newest, for the copier: p is in no table
 * (the copier holds it as MOVING).  0, or -1 when t is full. */
static int insert_moved(struct table *t, uint64_t p, uint64_t v)
{
	for (uint64_t i = hash(p) & t->mask, n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
		uint64_t k = atomic_load_acquire(&t->slots[i].key);
		if (k != K_EMPTY && k != K_TOMB)
			continue;
		if (atomic_cas_acq_rel(&t->slots[i].key, &k, p)) {
			atomic_store_release(&t->slots[i].val, v);
			if (k == K_EMPTY)
				atomic_add_relaxed(&t->used, 1);
			atomic_add_relaxed(&t->live, 1);
			return 0;
		}
		i = (i - 1) & t->mask;   /* the slot changed: look at it again */
		n--;
	}
	return -1;
}

/* Copy slot i of t into t->next. */
static void copy_slot(struct table *t, uint64_t i)
{
	struct slot *s = &t->slots[i];
	struct table *next = atomic_load_acquire(&t->next);
	unsigned spins = 0;

	for (;;) {
		uint64_t k = atomic_load_acquire(&s->key);
		if (k == K_EMPTY || k == K_TOMB) {
			uint64_t moved = k == K_EMPTY ? K_MOVED_EMPTY : K_MOVED_FULL;
			if (atomic_cas_acq_rel(&s->key, &k, moved))
				return;
			continue;
		}
		if (k == K_MOVED_EMPTY || k == K_MOVED_FULL)
			return;
		if (k & (K_PENDING | K_MOVING)) {   /* an insert is publishing it */
			pause_briefly(&spins);
			continue;
		}
		if (!atomic_compare_exchange_strong_explicit(&s->key, &k, k | K_MOVING, memory_order_seq_cst,
							     memory_order_seq_cst))
			continue;
		/* Final now, but for an insert replacing a stale entry, which
		 * checks the key after its swap (see hds_live_insert). */
		uint64_t v = atomic_load_explicit(&s->val, memory_order_seq_cst);
		if (insert_moved(next, k, v) < 0)
			atomic_add_relaxed(&hds.dropped_allocs, 1);   /* the new table is full */
		atomic_store_release(&s->key, K_MOVED_FULL);
		return;
	}
}

/* The copy of t is complete: the tables from t->next on are all there is.
 * t's pages go back to the kernel now (a reader that still looks there
 * reads EMPTY and moves on; an insert takes itself back); the array and
 * the header are freed by the writer thread after a grace period. */
static void copy_done(struct table *t)
{
	struct table *next = atomic_load_acquire(&t->next);

	atomic_store_release(&oldest, next);
	madvise(t->slots, t->bytes, MADV_DONTNEED);
	atomic_store_release(&t->state, T_RETIRED);
	atomic_store_release(&resizing, 0);
}

/* Copy up to max_chunks chunks of t (UINT64_MAX: all that are left). */
static void help_copy(struct table *t, uint64_t max_chunks)
{
	for (uint64_t done = 0; done < max_chunks; done++) {
		uint64_t c = atomic_add_relaxed(&t->claimed, 1);
		if (c >= t->nchunks)
			return;
		uint64_t end = (c + 1) * CHUNK < t->mask + 1 ? (c + 1) * CHUNK : t->mask + 1;
		for (uint64_t i = c * CHUNK; i < end; i++)
			copy_slot(t, i);
		if (atomic_add_relaxed(&t->copied, 1) + 1 == t->nchunks)
			copy_done(t);
	}
}

/* If a copy is under way, do a share of it. */
static inline void help_if_copying(uint64_t chunks)
{
	struct table *o = atomic_load_acquire(&oldest);

	if (unlikely(o != atomic_load_acquire(&newest)) && o)
		help_copy(o, chunks);
}

/* Start copying the newest table t into a new one sized for its live
 * entries.  Returns 0 when a copy started (or another is under way). */
static int resize(struct table *t)
{
	int expected = 0;

	if (!atomic_cas_acq_rel(&resizing, &expected, 1))
		return 0;
	if (atomic_load_acquire(&newest) != t) {
		atomic_store_release(&resizing, 0);
		return 0;
	}
	int64_t live = atomic_load_relaxed(&t->live);
	uint64_t want = MIN_SLOTS;
	while (want < 3 * (uint64_t)(live > 0 ? live : 0) + 2 * BATCH)   /* room for inserts during the copy */
		want <<= 1;
	struct table *n = table_new(want);
	if (!n) {
		atomic_store_relaxed(&headers_short, 1);
		atomic_store_release(&resizing, 0);
		return -1;
	}
	atomic_store_release(&t->next, n);
	atomic_store_release(&newest, n);
	return 0;
}

/* ---- insert and remove ------------------------------------------------- */

/* Take p out of table t.  Returns its entry; 0 when it is not in t (or it
 * was being copied out of t: then *moved is set and the caller looks in the
 * next table). */
static uint64_t remove_in(struct table *t, uint64_t p, int *moved)
{
	unsigned spins = 0;

	for (uint64_t i = hash(p) & t->mask, n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
		struct slot *s = &t->slots[i];
		uint64_t k = atomic_load_acquire(&s->key);
		if (k == K_EMPTY || k == K_MOVED_EMPTY)
			return 0;
		if ((k & ~K_MOVING) != p)
			continue;
		if (k & K_MOVING) {
			/* The copier has it: it will be in the next table. */
			while ((atomic_load_acquire(&s->key) & ~K_MOVING) == p)
				pause_briefly(&spins);
			*moved = 1;
			return 0;
		}
		uint64_t v = atomic_load_acquire(&s->val);
		if (atomic_cas_acq_rel(&s->key, &k, K_TOMB))
			return v;
		/* The copier took it: look again at this slot. */
		i = (i - 1) & t->mask;
		n--;
	}
	return 0;
}

static uint64_t remove_any(uint64_t p)
{
	for (struct table *t = atomic_load_acquire(&oldest); t; t = atomic_load_acquire(&t->next)) {
		int moved = 0;
		uint64_t v = remove_in(t, p, &moved);
		if (v) {
			count(t, 0, -1);
			return v;
		}
	}
	return 0;
}

uint64_t hds_large_remove(const void *p)
{
	if ((uintptr_t)p >> ADDR_BITS || !p)
		return 0;
	struct hds_thread *rt = hds_read_begin();
	help_if_copying(1);
	uint64_t v = remove_any((uintptr_t)p);
	hds_read_end(rt);
	return v;
}

/* Our swap of a stale entry raced with the copier, which may have copied
 * the old value: wait for the copy, then set our entry where it went. */
static void fix_copied(struct table *t, struct slot *s, uint64_t p, uint64_t entry)
{
	unsigned spins = 0;

	while ((atomic_load_acquire(&s->key) & ~K_MOVING) == p)
		pause_briefly(&spins);
	for (struct table *n = atomic_load_acquire(&t->next); n; n = atomic_load_acquire(&n->next))
		for (uint64_t i = hash(p) & n->mask, k = 0; k <= n->mask; i = (i + 1) & n->mask, k++) {
			uint64_t key = atomic_load_acquire(&n->slots[i].key);
			if (key == K_EMPTY || key == K_MOVED_EMPTY)
				break;
			if (key == p) {
				atomic_store_release(&n->slots[i].val, entry);
				return;
			}
		}
}


static uint64_t insert(uint64_t p, uint64_t entry);

/* Unmap the arrays of retired tables and free their headers, after a grace
 * period.  Outside any read section. */
static void collect_retired(void)
{
	struct table *retired[RING];
	int n = 0;

	for (int i = 0; i < RING; i++)
		if (atomic_load_acquire(&headers[i].state) == T_RETIRED)
			retired[n++] = &headers[i];
	if (n && hds_rcu_synchronize(50))
		for (int i = 0; i < n; i++) {
			hds_unmap(retired[i]->slots, retired[i]->bytes);
			retired[i]->slots = NULL;
			atomic_store_release(&retired[i]->state, T_FREE);
		}
}

uint64_t hds_large_insert(const void *ptr, uint32_t stack_id, uint64_t payload)
{
	uint64_t p = (uintptr_t)ptr;

	if (p >> ADDR_BITS || !p || stack_id > HDS_LIVE_MAX_STACK || payload > HDS_LIVE_PAYLOAD_MAX)
		return UINT64_MAX;
	struct hds_thread *rt = hds_read_begin();
	uint64_t old = insert(p, ((uint64_t)stack_id + 1) << HDS_LIVE_SIZE_BITS | payload);
	hds_read_end(rt);
	/* Every header in use: free the retired ones here, outside our read
	 * section, if the writer thread has not (it may not run at all). */
	if (unlikely(atomic_load_relaxed(&headers_short)) && atomic_exchange(&headers_short, 0))
		collect_retired();
	return old;
}

static uint64_t insert(uint64_t p, uint64_t entry)
{
	uint64_t old = 0;
	int full_tries = 0;

	help_if_copying(2);
	/* While a copy is under way, a stale entry for p may sit in an older
	 * table: take it out first, so p is never in two tables. */
	if (unlikely(atomic_load_acquire(&oldest) != atomic_load_acquire(&newest)))
		old = remove_any(p);
	for (int waits = 0;; ) {
		struct table *t = atomic_load_acquire(&newest);
		struct slot *target = NULL;
		uint64_t i = hash(p) & t->mask, n;
		int restart = 0;

		/* Back-pressure: the newest table is 3/4 used and cannot grow
		 * until the copy into it is done (a thread that claimed a chunk
		 * may be preempted).  Help, let it run, and insert only once
		 * there is room for the copy's entries: else they would have
		 * nowhere to go.  Bounded (about a second): a copier stuck for
		 * good (a signal handler that never returns) must not stop
		 * every other thread; past that, the insert goes ahead. */
		if (unlikely(atomic_load_acquire(&oldest) != t) && waits < 20000 &&
		    atomic_load_relaxed(&t->used) * 4 >= (int64_t)(t->mask + 1) * 3) {
			help_if_copying(UINT64_MAX);
			if (++waits > 64)
				sched_yield();
			continue;
		}

		for (n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
			struct slot *s = &t->slots[i];
			uint64_t k = atomic_load_acquire(&s->key);
			if (k == p) {
				/* A block whose free we never saw: replace its entry.
				 * The copier reads val after claiming the key (both
				 * sequentially consistent): if the key is still ours
				 * after our swap, the copy will carry our entry. */
				uint64_t v = atomic_exchange_explicit(&s->val, entry, memory_order_seq_cst);
				if (atomic_load_explicit(&s->key, memory_order_seq_cst) != p)
					fix_copied(t, s, p, entry);
				return v;
			}
			if (k == K_EMPTY) {
				if (!target)
					target = s;
				break;
			}
			if (k == K_TOMB && !target)
				target = s;
			if (k == K_MOVED_EMPTY || k == K_MOVED_FULL || (k & K_MOVING)) {
				restart = 1;   /* t is being copied: the newest is another */
				break;
			}
		}
		if (restart) {
			/* A copy began after we looked: p may be stale in t. */
			if (!old)
				old = remove_any(p);
			continue;
		}
		if (!target) {
			/* Full: a copy into t is still under way (a thread that
			 * claimed a chunk was preempted) and inserts filled t
			 * meanwhile.  Help, let that thread run, and try again;
			 * drop the block only if that does not free room. */
			if (++full_tries > 1000)
				return UINT64_MAX;
			help_if_copying(UINT64_MAX);
			resize(t);
			sched_yield();
			continue;
		}
		uint64_t k = atomic_load_acquire(&target->key);
		if ((k != K_EMPTY && k != K_TOMB) || !atomic_cas_acq_rel(&target->key, &k, p | K_PENDING))
			continue;   /* taken meanwhile: look again */
		atomic_store_relaxed(&target->val, entry);
		if (unlikely(atomic_load_acquire(&newest) != t)) {
			/* t was replaced: the copier waits on our PENDING key, so
			 * the slot is still ours to give up. */
			atomic_store_release(&target->key, K_TOMB);
			continue;
		}
		atomic_store_release(&target->key, p);
		count(t, k == K_EMPTY, 1);
		if (unlikely(atomic_load_relaxed(&t->used) * 4 >= (int64_t)(t->mask + 1) * 3))
			resize(t);
		return old;
	}
}

/* ---- housekeeping -------------------------------------------------------- */

uint64_t hds_large_resident(void)
{
	uint64_t total = 0;
	struct hds_thread *rt = hds_read_begin();

	for (struct table *t = atomic_load_acquire(&oldest); t; t = atomic_load_acquire(&t->next))
		total += hds_resident(t->slots, t->bytes);
	hds_read_end(rt);
	return total;
}

/* Every block in the tables, from the oldest to the newest: a key copied
 * into a newer table is MOVED_FULL in the older one, so each block is
 * given once.  Only while no thread can insert or remove (reach.c stops
 * them outside the shim's code): then no key is PENDING or MOVING. */
uint64_t hds_large_each(void (*fn)(void *ctx, uintptr_t addr, uint64_t entry), void *ctx)
{
	uint64_t blocks = 0;

	for (struct table *t = atomic_load_acquire(&oldest); t; t = atomic_load_acquire(&t->next))
		for (uint64_t i = 0; i <= t->mask; i++) {
			uint64_t k = atomic_load_relaxed(&t->slots[i].key);
			if (k == K_EMPTY || k == K_TOMB || k == K_MOVED_EMPTY || k == K_MOVED_FULL ||
			    (k & (K_PENDING | K_MOVING)))
				continue;
			fn(ctx, (uintptr_t)k, atomic_load_relaxed(&t->slots[i].val));
			blocks++;
		}
	return blocks;
}

/* The writer thread, every second: finish a copy under way; start one into
 * a smaller table when the newest is under 1/8 live; free the arrays of
 * tables retired before a grace period. */
uint64_t hds_large_reclaim(void)
{
	uint64_t before = hds_large_resident();
	struct hds_thread *rt = hds_read_begin();

	help_if_copying(UINT64_MAX);
	struct table *t = atomic_load_acquire(&newest);
	if (t->mask + 1 > MIN_SLOTS && atomic_load_relaxed(&t->live) * 8 < (int64_t)(t->mask + 1)) {
		resize(t);
		help_if_copying(UINT64_MAX);
	}
	hds_read_end(rt);
	collect_retired();
	uint64_t after = hds_large_resident();
	return before > after ? before - after : 0;
}

void hds_large_after_fork(void)
{
	/* Alone in the child: the copier may be gone.  Finish any copy,
	 * giving up on slots that only a vanished thread could complete. */
	struct table *o = atomic_load_relaxed(&oldest);

	tl_count_table = NULL;
	tl_used = tl_live = 0;
	if (o && o != atomic_load_relaxed(&newest)) {
		struct table *next = atomic_load_relaxed(&o->next);
		for (uint64_t i = 0; i <= o->mask; i++) {
			struct slot *s = &o->slots[i];
			uint64_t k = atomic_load_relaxed(&s->key);
			if (k & K_MOVING) {
				/* Cut between its claim and its insert: copy it
				 * unless the new table already has it. */
				int moved = 0;
				uint64_t p = k & ~K_MOVING, v = atomic_load_relaxed(&s->val);
				uint64_t there = remove_in(next, p, &moved);
				insert_moved(next, p, there ? there : v);
				atomic_store_relaxed(&s->key, K_MOVED_FULL);
			} else if (k & K_PENDING) {
				atomic_store_relaxed(&s->key, K_TOMB);
			}
		}
		atomic_store_relaxed(&o->claimed, 0);
		atomic_store_relaxed(&o->copied, 0);
		for (uint64_t c = 0; c < o->nchunks; c++) {
			uint64_t end = (c + 1) * CHUNK < o->mask + 1 ? (c + 1) * CHUNK : o->mask + 1;
			for (uint64_t i = c * CHUNK; i < end; i++)
				copy_slot(o, i);
		}
		copy_done(o);
	}
	atomic_store_relaxed(&resizing, 0);
	struct table *t = atomic_load_relaxed(&newest);
	for (uint64_t i = 0; i <= t->mask; i++) {
		if (atomic_load_relaxed(&t->slots[i].key) & K_PENDING)
			atomic_store_relaxed(&t->slots[i].key, K_TOMB);
	}
}
