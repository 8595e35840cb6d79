/*
 * live.c - live blocks by address: a two-level radix map from a block's
 * address to its entry (stack id + 1, requested size).
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
 * Index: a block's slot is (address >> granule_shift).  Distinct live blocks
 * must never share a slot: glibc's chunks are at least 32 bytes apart, so
 * the granule is 32 bytes there; with another allocator (which may hand out
 * 8-byte blocks) it is 8.  The 47-bit user address space is split into a
 * directory of leaves; each leaf holds 2^21 slots (16 MiB of address
 * space-ish mappings, reserved with MAP_NORESERVE) and is created on first
 * use with a CAS.  Memory follows the heap's address span, page by page:
 * for glibc at most 8 bytes per 32 bytes of heap actually touched, less for
 * large blocks (one touched slot per block).
 *
 * Full: a block above 2^47 or a leaf that cannot be mapped is not recorded
 * (the caller counts a dropped allocation).
 */
#include "internal.h"

#include <sys/mman.h>

#define LEAF_BITS   21
#define LEAF_SLOTS  (UINT64_C(1) << LEAF_BITS)
#define ADDR_BITS   47
#define MAX_LEAVES  65536

static int shift;
static unsigned dir_bits;
static _Atomic(_Atomic uint64_t *) *dir;
static _Atomic uint64_t **leaves;      /* every leaf created, for hds_live_resident() */
static _Atomic uint32_t nleaves;

int hds_live_init(int granule_shift)
{
	shift = granule_shift;
	dir_bits = ADDR_BITS - LEAF_BITS - (unsigned)shift;
	dir = hds_map(sizeof *dir << dir_bits);
	leaves = hds_map(sizeof *leaves * MAX_LEAVES);
	return dir && leaves ? 0 : -1;
}

static _Atomic uint64_t *leaf_for(uint64_t slot, int create)
{
	uint64_t d = slot >> LEAF_BITS;
	_Atomic uint64_t *leaf = atomic_load_acquire(&dir[d]);

	if (leaf || !create)
		return leaf;
	_Atomic uint64_t *fresh = hds_map(sizeof *fresh * LEAF_SLOTS);
	if (!fresh)
		return NULL;
	_Atomic uint64_t *expected = NULL;
	if (!atomic_cas_acq_rel(&dir[d], &expected, fresh)) {
		munmap((void *)fresh, sizeof *fresh * LEAF_SLOTS);
		return expected;
	}
	uint32_t n = atomic_add_relaxed(&nleaves, 1);
	if (n < MAX_LEAVES)
		leaves[n] = fresh;
	return fresh;
}

uint64_t hds_live_insert(const void *p, uint32_t stack_id, uint64_t size)
{
	uint64_t slot = (uintptr_t)p >> shift;

	if ((uintptr_t)p >> ADDR_BITS || stack_id > HDS_LIVE_MAX_STACK || size > HDS_LIVE_MAX_SIZE)
		return UINT64_MAX;
	_Atomic uint64_t *leaf = leaf_for(slot, 1);
	if (!leaf)
		return UINT64_MAX;
	uint64_t entry = ((uint64_t)stack_id + 1) << HDS_LIVE_SIZE_BITS | size;
	return atomic_xchg_acq_rel(&leaf[slot & (LEAF_SLOTS - 1)], entry);
}

uint64_t hds_live_remove(const void *p)
{
	uint64_t slot = (uintptr_t)p >> shift;

	if ((uintptr_t)p >> ADDR_BITS)
		return 0;
	_Atomic uint64_t *leaf = leaf_for(slot, 0);
	if (!leaf)
		return 0;
	_Atomic uint64_t *e = &leaf[slot & (LEAF_SLOTS - 1)];
	/* Plain load first: most frees of unknown pointers then cost no
	 * write to a page we would otherwise not touch. */
	if (atomic_load_relaxed(e) == 0)
		return 0;
	return atomic_xchg_acq_rel(e, 0);
}

uint64_t hds_live_resident(void)
{
	uint64_t total = hds_resident((const void *)dir, sizeof *dir << dir_bits);
	uint32_t n = atomic_load_relaxed(&nleaves);

	for (uint32_t i = 0; i < n && i < MAX_LEAVES; i++)
		if (leaves[i])
			total += hds_resident((const void *)leaves[i], sizeof *leaves[i] * LEAF_SLOTS);
	return total;
}
