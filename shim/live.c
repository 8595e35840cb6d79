/*
 * live.c - live blocks by address: for blocks under 256 bytes, a two-level
 * radix map from a block's address to its entry (stack id + 1, family,
 * requested size); larger ones go to blocks_large.c.
 *
 * Workload: one insert per allocation and one remove per free, from every
 * thread; lookups by anyone else never happen (snapshots read the per-stack
 * counters, not this map).  So the map is a direct index, not a hash table:
 * no probing, no tombstones, no resizing, and every operation is one atomic
 * exchange on the block's own slot.
 *
 * Why that is race-free: an address is live at most once, and only the
 * thread that holds the pointer touches its slot: the allocating thread
 * inserts it after the real allocator returned it, and the freeing thread
 * removes it before the real free (see entry.c), so no two threads ever
 * operate on one slot at once.  The exchange (acq_rel) returns what was
 * there, which is how a free learns the block's stack and size.
 *
 * Index: a block's slot is (address >> granule shift).  Distinct live
 * blocks must never share a slot: glibc's chunks are at least 32 bytes
 * apart, so its granule is 32 bytes (8 with another allocator, which may
 * hand out 8-byte blocks).  Only blocks under 256 bytes come here: they are
 * most blocks of most programs, packed close together, where a direct
 * index is both the fastest map and the smallest (4 bytes per 32 bytes of
 * heap they occupy: python3's heap costs it an eighth of what a hash table
 * would, and a plain hash table made each operation twice as costly).
 * Larger blocks go to blocks_large.c, a hash table whose memory follows
 * their number: a direct index costs up to a page of slots per block
 * where blocks are far apart, which large blocks are.  A free looks here,
 * then there (entry.c skips the map that glibc's chunk size rules out).
 *
 * The map splits the 47-bit user address space into a directory of leaves
 * of 2^21 slots of 4 bytes (8 MiB, MAP_NORESERVE), created on first use
 * with a CAS.  Memory follows the touched slots page by page: at most 4
 * bytes per 32 bytes of heap the small blocks occupy, one 4 KiB page of
 * slots for a small block alone in 32 KiB of heap.

 * Reclaim: pages of slots that once held blocks stay dirty after the blocks
 * are freed, so the writer thread gives back the resident pages that hold no
 * block (hds_live_reclaim).  Each leaf keeps, per 4 KiB page of slots, a
 * "present" bit (set after a block is stored there, cleared only when the
 * page is released) and a "reclaiming" flag.  The reclaimer sets the flag,
 * scans the page again, and only if it is still empty clears the bit and
 * releases the page, with its empty neighbours in one madvise (one call
 * per page made a pass over 50 MiB of pages take 0.5 s, runs 0.12 s); an
 * insert that finds the flag after its store (both sides seq_cst) waits for
 * the release and stores again.  A lookup in a page whose bit is clear
 * touches nothing, so probing the fine map for a large or unknown block
 * costs no memory.  The map then follows the live population, not the span
 * of addresses ever used.
 *
 * Sparse maps (sampled mode): most frees are of blocks that were never
 * recorded, and after a while of sampling nearly every page of slots has
 * held some block, so the present bit no longer spares the free a cache
 * miss on its slot.  Each leaf then also counts the blocks in each page of
 * slots (incremented when an insert fills an empty slot, decremented when a
 * remove empties one; both before the block changes hands, so a thread that
 * frees a recorded block sees its count), and a remove in a page whose
 * count is zero reads nothing else.  Full recording leaves it off: there
 * nearly every free finds its block, and the counts would only add two
 * atomic operations.
 *
 * Full: a block above 2^47 or a leaf that cannot be mapped is not recorded
 * (the caller counts a dropped allocation).
 */
#include "internal.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#define LEAF_BITS   21
#define LEAF_SLOTS  (UINT64_C(1) << LEAF_BITS)
#define PAGE_SLOTS  (4096 / sizeof(slot_t))     /* 4 KiB of slots */
#define LEAF_PAGES  (LEAF_SLOTS / PAGE_SLOTS)
#define ADDR_BITS   47
#define MAX_LEAVES  16384
#define LARGE_BLOCK UINT64_C(256)                /* from here: blocks_large.c */
_Static_assert(LARGE_BLOCK == HDS_LIVE_BLOCK, "one threshold between the maps");

/*
 * A slot is 32 bits: the blocks here are under 256 bytes, so an entry
 * packs into (stack id + 1) << 12 | family << 10 | offset << 8 | size,
 * where offset is the block's address within its granule in 8-byte units
 * (so that the map can give every block's address back, hds_live_each).
 * A stack id from 2^20 - 1 on does not fit: its blocks go to the large
 * table, and from then on a free that does not find its block here looks
 * there too (spilled).  Half the memory of 64-bit slots: 4 bytes per
 * 32 bytes of glibc heap, per 8 bytes of another allocator's.
 */
typedef uint32_t slot_t;
#define SLOT_ID_SHIFT 12
#define SLOT_MAX_ID   ((UINT32_C(1) << (32 - SLOT_ID_SHIFT)) - 2)
_Static_assert(LARGE_BLOCK == 256, "sizes in 8 bits");

static _Atomic int spilled;   /* some small blocks are in the large table */
static int shared;            /* two live blocks can share a granule (see hds_live_init) */

static inline slot_t slot_pack(uint32_t stack_id, uint64_t payload, unsigned off)
{
	return (slot_t)(stack_id + 1) << SLOT_ID_SHIFT | (slot_t)(payload >> HDS_LIVE_KIND_SHIFT & 3) << 10 |
	       (slot_t)off << 8 | (slot_t)(payload & 255);
}

static inline uint64_t slot_entry(slot_t v)
{
	if (!v)
		return 0;
	return (uint64_t)(v >> SLOT_ID_SHIFT) << HDS_LIVE_SIZE_BITS | (uint64_t)(v >> 10 & 3) << HDS_LIVE_KIND_SHIFT |
	       (v & 255);
}

static inline unsigned slot_off(slot_t v)
{
	return v >> 8 & 3;
}

struct leaf {
	_Atomic slot_t *slots;                      /* LEAF_SLOTS entries */
	_Atomic int published;                      /* won its directory slot: walkers may look */
	uint64_t dir_index;                         /* its directory slot */
	_Atomic uint64_t present[LEAF_PAGES / 64];  /* page may hold a block */
	_Atomic unsigned char reclaiming[LEAF_PAGES];
	_Atomic uint16_t blocks[LEAF_PAGES];        /* sparse maps: blocks in the page */
};

struct radix {
	int shift;
	unsigned dir_bits;
	_Atomic(struct leaf *) *dir;
	struct leaf *leaves;                        /* MAX_LEAVES, claimed in order */
	_Atomic uint32_t nleaves;
};

static struct radix small;
static int sparse;

static int radix_init(struct radix *r, int shift)
{
	r->shift = shift;
	r->dir_bits = ADDR_BITS - LEAF_BITS - (unsigned)shift;
	r->dir = hds_map(sizeof *r->dir << r->dir_bits);
	r->leaves = hds_map(sizeof *r->leaves * MAX_LEAVES);
	atomic_store_relaxed(&r->nleaves, 0);
	return r->dir && r->leaves ? 0 : -1;
}

int hds_live_init(int granule_shift, int sparse_map)
{
	sparse = sparse_map;
	/* glibc's blocks are at least 32 bytes apart: one per 32-byte granule.
	 * Another allocator's can be 8 bytes apart, but a granule of 8 bytes
	 * costs 4 bytes of slot per 8 of heap; with 16-byte granules a block
	 * that finds its slot held by a neighbour (another offset) goes to
	 * the large table instead. */
	shared = granule_shift > 3 && granule_shift < 5;
	return radix_init(&small, granule_shift) == 0 && hds_large_init() == 0 ? 0 : -1;
}

/* The leaf covering slot; with create, make it (CAS on the directory; the
 * loser's leaf keeps its index but is never published). */
static struct leaf *leaf_for(struct radix *r, uint64_t slot, int create)
{
	uint64_t d = slot >> LEAF_BITS;
	struct leaf *l = atomic_load_acquire(&r->dir[d]);

	if (l || !create)
		return l;
	uint32_t n = atomic_add_relaxed(&r->nleaves, 1);
	if (n >= MAX_LEAVES)
		return NULL;
	struct leaf *fresh = &r->leaves[n];
	_Atomic slot_t *slots = hds_map(sizeof *slots * LEAF_SLOTS);
	if (!slots)
		return NULL;
	atomic_store_relaxed(&fresh->slots, slots);
	fresh->dir_index = d;
	struct leaf *expected = NULL;
	if (!atomic_cas_acq_rel(&r->dir[d], &expected, fresh)) {
		/* Never published: no walker ever looks at it. */
		hds_unmap((void *)slots, sizeof *slots * LEAF_SLOTS);
		return expected;
	}
	atomic_store_release(&fresh->published, 1);
	return fresh;
}

static inline int page_present(struct leaf *l, uint64_t pg)
{
	return (atomic_load_relaxed(&l->present[pg / 64]) >> (pg % 64)) & 1;
}

static inline void page_mark(struct leaf *l, uint64_t pg)
{
	uint64_t bit = UINT64_C(1) << (pg % 64);

	if (!(atomic_load_explicit(&l->present[pg / 64], memory_order_seq_cst) & bit))
		atomic_fetch_or_explicit(&l->present[pg / 64], bit, memory_order_seq_cst);
}

/* The end of an insert whose entry is stored in slot i (page pg); old is
 * what the slot held. */
static inline uint64_t slot_insert_done(struct leaf *l, _Atomic slot_t *slots, uint64_t i, uint64_t pg,
					  slot_t entry, slot_t old)
{
	/* A reclaim that started before our store was visible may release the
	 * page under us: wait for it and store again. */
	if (unlikely(atomic_load_explicit(&l->reclaiming[pg], memory_order_seq_cst))) {
		while (atomic_load_acquire(&l->reclaiming[pg]))
			sched_yield();
		atomic_store_explicit(&slots[i], entry, memory_order_seq_cst);
	}
	/* Mark the page only now: a reclaim that released it before our store
	 * also cleared its bit, and a reclaim after our store sees the entry
	 * and leaves the page (and its bit) alone. */
	page_mark(l, pg);
	if (sparse && !old)
		atomic_add_relaxed(&l->blocks[pg], 1);
	return slot_entry(old);
}

_Atomic uint8_t hds_live_filter[1u << HDS_LIVE_FILTER_BITS];

/* A recorded block starts at p (+1) or no longer does (-1): its count in
 * hds_live_filter, which sticks at 255. */
static void filter_add(const void *p, int d)
{
	_Atomic uint8_t *c = hds_live_filter_of(p);
	uint8_t v = atomic_load_relaxed(c);

	while (v != 255 && (d > 0 || v != 0) &&
	       !atomic_compare_exchange_weak_explicit(c, &v, (uint8_t)(v + d), memory_order_relaxed,
						      memory_order_relaxed))
		;
}

static uint64_t live_insert(const void *p, uint32_t stack_id, uint64_t payload);

uint64_t hds_live_insert(const void *p, uint32_t stack_id, uint64_t payload)
{
	uint64_t old = live_insert(p, stack_id, payload);

	if (hds.cfg.sample_bytes && old == 0)
		filter_add(p, 1);   /* (a replaced block at p keeps the count it had) */
	return old;
}

static uint64_t live_insert(const void *p, uint32_t stack_id, uint64_t payload)
{
	if ((payload & HDS_LIVE_MAX_SIZE) >= LARGE_BLOCK)
		return hds_large_insert(p, stack_id, payload);

	struct radix *r = &small;
	uint64_t slot = (uintptr_t)p >> r->shift;

	if ((uintptr_t)p >> ADDR_BITS || stack_id > HDS_LIVE_MAX_STACK || payload > HDS_LIVE_PAYLOAD_MAX)
		return UINT64_MAX;
	if (unlikely(stack_id > SLOT_MAX_ID)) {
		if (!atomic_load_relaxed(&spilled))
			atomic_store_explicit(&spilled, 1, memory_order_seq_cst);
		return hds_large_insert(p, stack_id, payload);
	}
	struct leaf *l = leaf_for(r, slot, 1);
	if (!l)
		return UINT64_MAX;
	slot_t entry = slot_pack(stack_id, payload, (unsigned)(((uintptr_t)p & ((UINT64_C(1) << r->shift) - 1)) >> 3));
	uint64_t i = slot & (LEAF_SLOTS - 1), pg = i / PAGE_SLOTS;
	_Atomic slot_t *slots = atomic_load_relaxed(&l->slots);

	if (unlikely(shared)) {
		/* Empty: claim it.  Our own address (a free we never saw): take
		 * it over.  A neighbour's: the block goes to the large table. */
		slot_t v = atomic_load_explicit(&slots[i], memory_order_seq_cst);
		while (!v && !atomic_compare_exchange_weak_explicit(&slots[i], &v, entry, memory_order_seq_cst,
								    memory_order_seq_cst))
			;
		if (v && slot_off(v) != slot_off(entry)) {
			if (!atomic_load_relaxed(&spilled))
				atomic_store_explicit(&spilled, 1, memory_order_seq_cst);
			return hds_large_insert(p, stack_id, payload);
		}
		if (v)
			atomic_store_explicit(&slots[i], entry, memory_order_seq_cst);
		return slot_insert_done(l, slots, i, pg, entry, v);
	}
	slot_t old = atomic_exchange_explicit(&slots[i], entry, memory_order_seq_cst);
	return slot_insert_done(l, slots, i, pg, entry, old);
}

static inline uint64_t radix_remove(struct radix *r, uintptr_t p)
{
	uint64_t slot = p >> r->shift;
	struct leaf *l = atomic_load_acquire(&r->dir[slot >> LEAF_BITS]);   /* never created here */

	if (!l)
		return 0;
	uint64_t i = slot & (LEAF_SLOTS - 1), pg = i / PAGE_SLOTS;
	if (!page_present(l, pg))
		return 0;   /* no block in that page: touch nothing */
	if (sparse && !atomic_load_relaxed(&l->blocks[pg]))
		return 0;
	_Atomic slot_t *e = &atomic_load_relaxed(&l->slots)[i];
	slot_t v = atomic_load_relaxed(e);
	if (v == 0)
		return 0;
	if (unlikely(shared) && slot_off(v) != (unsigned)((p & ((UINT64_C(1) << r->shift) - 1)) >> 3))
		return 0;   /* a neighbour's: ours, if recorded, is in the large table */
	slot_t old = atomic_xchg_acq_rel(e, 0);
	if (sparse && old)
		atomic_sub_relaxed(&l->blocks[pg], 1);
	return slot_entry(old);
}

uint64_t hds_live_remove_in(const void *p, unsigned maps)
{
	uint64_t e = 0;

	if ((uintptr_t)p >> ADDR_BITS)
		return 0;
	if (maps & HDS_LIVE_FINE)
		e = radix_remove(&small, (uintptr_t)p);
	if (!e && ((maps & HDS_LIVE_COARSE) || unlikely(atomic_load_relaxed(&spilled))))
		e = hds_large_remove(p);
	if (e && hds.cfg.sample_bytes)
		filter_add(p, -1);
	return e;
}

uint64_t hds_live_remove(const void *p)
{
	return hds_live_remove_in(p, HDS_LIVE_FINE | HDS_LIVE_COARSE);
}

static uint64_t radix_resident(const struct radix *r)
{
	uint64_t total = hds_resident((const void *)r->dir, sizeof *r->dir << r->dir_bits) +
			 hds_resident(r->leaves, sizeof *r->leaves * MAX_LEAVES);
	uint32_t n = atomic_load_relaxed(&r->nleaves);

	for (uint32_t k = 0; k < n && k < MAX_LEAVES; k++) {
		const struct leaf *l = &r->leaves[k];
		if (atomic_load_acquire(&l->published))
			total += hds_resident((const void *)l->slots, sizeof *l->slots * LEAF_SLOTS);
	}
	return total;
}

uint64_t hds_live_resident(void)
{
	return radix_resident(&small) + hds_large_resident();
}

/* Give back the pages of r's leaves that are marked present but hold no
 * block. */
/* Release the claimed pages [first, end) of l in one call, then let the
 * inserts that wait on them go on. */
static uint64_t release_run(struct leaf *l, _Atomic slot_t *slots, uint64_t first, uint64_t end)
{
	uint64_t bytes = (end - first) * PAGE_SLOTS * sizeof *slots, freed = 0;

	if (first == end)
		return 0;
	if (madvise((void *)(slots + first * PAGE_SLOTS), bytes, MADV_DONTNEED) == 0)
		freed = bytes;
	for (uint64_t pg = first; pg < end; pg++)
		atomic_store_release(&l->reclaiming[pg], 0);
	return freed;
}

/* Pages released in one madvise at most: each page of a run keeps its
 * inserts waiting until the whole run is released. */
#define RELEASE_RUN 64

static uint64_t radix_reclaim(struct radix *r)
{
	uint32_t n = atomic_load_acquire(&r->nleaves);
	uint64_t freed = 0;

	for (uint32_t k = 0; k < n && k < MAX_LEAVES; k++) {
		struct leaf *l = &r->leaves[k];
		if (!atomic_load_acquire(&l->published))
			continue;
		_Atomic slot_t *slots = atomic_load_relaxed(&l->slots);
		uint64_t run = 0, run_end = 0;   /* claimed, empty pages [run, run_end) */
		for (uint64_t pg = 0; pg < LEAF_PAGES; pg++) {
			if (!page_present(l, pg))
				continue;
			_Atomic slot_t *page = slots + pg * PAGE_SLOTS;
			uint64_t i = 0;
			while (i < PAGE_SLOTS && !atomic_load_relaxed(&page[i]))   /* cheap first look */
				i++;
			if (i < PAGE_SLOTS)
				continue;
			/* Claim the page, look again, and only if it is still
			 * empty clear its bit; it joins the run released next. */
			atomic_store_explicit(&l->reclaiming[pg], 1, memory_order_seq_cst);
			for (i = 0; i < PAGE_SLOTS && !atomic_load_explicit(&page[i], memory_order_seq_cst); i++)
				;
			if (i < PAGE_SLOTS) {
				atomic_store_release(&l->reclaiming[pg], 0);
				continue;
			}
			atomic_fetch_and_explicit(&l->present[pg / 64], ~(UINT64_C(1) << (pg % 64)),
						  memory_order_seq_cst);
			if (pg != run_end || run_end - run == RELEASE_RUN) {
				freed += release_run(l, slots, run, run_end);
				run = pg;
			}
			run_end = pg + 1;
		}
		freed += release_run(l, slots, run, run_end);
	}
	return freed;
}

uint64_t hds_live_reclaim(void)
{
	return radix_reclaim(&small) + hds_large_reclaim();
}

/* The published leaves, sorted by their directory slot, give the blocks in
 * address order. */
uint64_t hds_live_each_small(void (*fn)(void *ctx, uintptr_t addr, uint64_t entry), void *ctx)
{
	struct radix *r = &small;
	uint32_t n = atomic_load_acquire(&r->nleaves), m = 0;
	uint64_t blocks = 0;

	if (n > MAX_LEAVES)
		n = MAX_LEAVES;
	size_t len = sizeof(struct leaf *) * (n ? n : 1);
	struct leaf **order = hds_map(len);
	if (!order)
		return 0;
	for (uint32_t k = 0; k < n; k++) {
		struct leaf *l = &r->leaves[k];
		if (!atomic_load_acquire(&l->published))
			continue;
		uint32_t j = m++;   /* insertion sort: leaves are few, claimed mostly in order */
		for (; j > 0 && order[j - 1]->dir_index > l->dir_index; j--)
			order[j] = order[j - 1];
		order[j] = l;
	}
	for (uint32_t j = 0; j < m; j++) {
		struct leaf *l = order[j];
		_Atomic slot_t *slots = atomic_load_relaxed(&l->slots);
		for (uint64_t pg = 0; pg < LEAF_PAGES; pg++) {
			if (!page_present(l, pg))
				continue;
			for (uint64_t i = pg * PAGE_SLOTS; i < (pg + 1) * PAGE_SLOTS; i++) {
				slot_t v = atomic_load_relaxed(&slots[i]);
				if (!v)
					continue;
				uint64_t slot = l->dir_index << LEAF_BITS | i;
				fn(ctx, (uintptr_t)(slot << r->shift) + ((uint64_t)slot_off(v) << 3), slot_entry(v));
				blocks++;
			}
		}
	}
	hds_unmap(order, len);
	return blocks;
}

void hds_live_after_fork(void)
{
	/* A reclaim the parent had under way is gone with its thread. */
	uint32_t n = atomic_load_relaxed(&small.nleaves);

	for (uint32_t k = 0; k < n && k < MAX_LEAVES; k++)
		memset((void *)small.leaves[k].reclaiming, 0, LEAF_PAGES);
	hds_large_after_fork();
}
