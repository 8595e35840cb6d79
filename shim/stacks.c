/*
 * stacks.c - the stack interning table: same frames, same id.
 *
 * Workload: called on every recorded allocation.  After warm-up nearly every
 * call is a hit (programs have thousands to a few hundred thousand distinct
 * allocation stacks and make millions of allocations), so lookups must be
 * cheap and never wait; inserts are rare and may be slower.
 *
 * Layout, all in hds_map()ed memory sized once at start-up:
 *  - records[max]: one 64-byte record per id (counters, hash, depth, where
 *    the frames are);
 *  - frames[]: an append-only arena of return addresses;
 *  - slots: open addressing with linear probing; a slot holds id + 1, or 0
 *    when empty.  Slots never go back to 0 (stacks are never removed), so a
 *    probe that reaches an empty slot proves absence.  Two tables: near
 *    (NEAR_SLOTS, 256 KiB) and far (2^k >= 2*max, sized for the most stacks
 *    a process may have: 8 MiB by default).  A stack is in the near table
 *    when one of the NEAR_PROBES slots from its home there was empty when
 *    it was inserted, else in the far one.  Programs have thousands of
 *    stacks, not millions: in the far table alone they would lie a cache
 *    line and often a page apart, and the probe's load of its slot was
 *    three quarters of the lookup's time in gcc's cc1.
 *    Why a stack is never in both: its near run only fills up (slots never
 *    empty), so once a thread finds those NEAR_PROBES slots all taken by
 *    other stacks, every thread will, and they all go on to the far table;
 *    a thread that still finds an empty slot there races for the same
 *    first empty slot as any other inserting it (the CAS picks one).
 *
 * Insert (lock-free): take a fresh id and frame space with fetch-add, fill
 * the record while nobody can see it, then CAS the empty slot from 0 to
 * id + 1 (release).  A reader loads the slot with acquire, so it sees the
 * record filled.  If the CAS loses to an equal stack, our record is marked
 * unused (ready = 2) and its id is wasted: rare, harmless, never reused.
 * `ready` is set to 1 after publication so snapshot writers, which walk
 * records by id rather than by slot, skip a record still being filled; an
 * insert interrupted by fork leaves such a record unpublished forever, and
 * nothing ever waits on it.
 *
 * Epochs: the same addresses can mean other code after a dlclose and a
 * dlopen at the same place.  A record carries the map epoch its frames are
 * known valid in; see stack_current().  A dead record's slot stays taken
 * (probing goes past it), and its frames are interned again as a new id.
 *
 * Full: when ids or frame space run out, intern returns -1; the caller
 * counts a dropped allocation and the snapshot says so.
 */
#include "internal.h"

#include <string.h>

static struct hds_stack *records;
static uintptr_t *frames;
static _Atomic uint32_t *slots;        /* far */
static _Atomic uint32_t *near;
#define NEAR_SLOTS  (UINT64_C(1) << 16)
#define NEAR_PROBES 16
static uint32_t max_records;
static uint64_t max_frames;
static uint64_t slot_mask;
static _Atomic uint32_t next_id;
static _Atomic uint64_t next_frame;

int hds_stacks_init(uint32_t max)
{
	uint64_t nslots = 1024;

	while (nslots < 2 * (uint64_t)max)
		nslots <<= 1;
	max_records = max;
	max_frames = (uint64_t)max * 48;
	atomic_store_relaxed(&next_id, 0);
	atomic_store_relaxed(&next_frame, 0);
	slot_mask = nslots - 1;
	records = hds_map(sizeof *records * max);
	frames = hds_map(sizeof *frames * max_frames);
	slots = hds_map(sizeof *slots * nslots);
	near = hds_map(sizeof *near * NEAR_SLOTS);
	return records && frames && slots && near ? 0 : -1;
}

static inline int stack_equal(const struct hds_stack *s, uint64_t hash,
			      const uintptr_t *f, int depth, unsigned flags)
{
	return s->hash == hash && s->depth == depth && s->flags == flags &&
	       memcmp(frames + s->frames_off, f, sizeof *f * (size_t)depth) == 0;
}

/*
 * Does record s, equal in frames, stand for this stack in epoch `now`?  Its
 * addresses meant the same code when it was interned; if no module under
 * them was loaded or unloaded since, they still do, and its epoch is raised
 * (any epoch between the two names the same modules, so a racing reader of
 * the epoch is right either way).  Otherwise it is dead for good.  Runs only
 * when the epoch moved since the record was last checked.
 */
static int stack_current(struct hds_stack *s, uint32_t now)
{
	uint32_t e = atomic_load_relaxed(&s->epoch);

	if (likely(e == now) && likely(!atomic_load_relaxed(&s->dead)))
		return 1;
	if (atomic_load_relaxed(&s->dead))
		return 0;
	if (hds_modules_changed(e, frames + s->frames_off, s->depth)) {
		atomic_store_relaxed(&s->dead, 1);
		return 0;
	}
	if (e < now)
		atomic_store_relaxed(&s->epoch, now);
	return 1;
}

/* Take an id and frame space and fill the record; -1 when full. */
static int64_t stack_prepare(uint64_t hash, const uintptr_t *f, int depth, unsigned flags, uint32_t epoch)
{
	uint32_t id = atomic_add_relaxed(&next_id, 1);
	if (id >= max_records) {
		atomic_store_relaxed(&next_id, max_records);  /* keep it from wrapping */
		return -1;
	}
	uint64_t off = atomic_add_relaxed(&next_frame, (uint64_t)depth);
	if (off + (uint64_t)depth > max_frames) {
		atomic_store_relaxed(&records[id].ready, 2);
		return -1;
	}
	memcpy(frames + off, f, sizeof *f * (size_t)depth);
	struct hds_stack *s = &records[id];
	s->hash = hash;
	s->frames_off = off;
	s->depth = (uint16_t)depth;
	s->flags = (uint16_t)flags;
	atomic_store_relaxed(&s->epoch, epoch);
	return id;
}

int64_t hds_stack_intern(const uintptr_t *f, int depth, unsigned flags, int *fresh)
{
	return hds_stack_intern_chain(f, depth, flags, hds_hash_chain(HDS_HASH_SEED, f, depth), fresh);
}

/*
 * Find the stack in table t (mask: its size - 1), probing at most `probes`
 * slots from `home`, or insert it at the first empty one (*mine: the record
 * prepared for it, -1 until one is needed; a record prepared in one table
 * may go into the other, so it holds the stack's own hash, never a home).
 * Returns its id; -1 when the table holds no such stack in those slots and
 * none is empty (or the stack table is full: then *mine is -2).
 */
static inline __attribute__((always_inline)) int64_t probe(_Atomic uint32_t *t, uint64_t mask, uint64_t probes,
							   uint64_t home, uint64_t hash, uint32_t epoch,
							   const uintptr_t *f, int depth, unsigned flags, int64_t *mine,
							   int *fresh)
{
	for (uint64_t i = home & mask, n = 0; n < probes; i = (i + 1) & mask, n++) {
		uint32_t v = atomic_load_acquire(&t[i]);
		if (v == 0) {
			if (*mine < 0 && (*mine = stack_prepare(hash, f, depth, flags, epoch)) < 0) {
				*mine = -2;
				return -1;
			}
			if (atomic_cas_acq_rel(&t[i], &v, (uint32_t)*mine + 1)) {
				atomic_store_release(&records[*mine].ready, 1);
				*fresh = 1;
				return *mine;
			}
			/* Lost the slot: v is the winner; it may be our stack. */
		}
		if (stack_equal(&records[v - 1], hash, f, depth, flags) && stack_current(&records[v - 1], epoch)) {
			if (*mine >= 0)
				atomic_store_relaxed(&records[*mine].ready, 2);
			return v - 1;
		}
	}
	return -1;
}

int64_t hds_stack_intern_chain(const uintptr_t *f, int depth, unsigned flags, uint64_t chain, int *fresh)
{
	uint64_t hash = hds_hash_final(chain, depth, flags);
	uint32_t epoch = atomic_load_relaxed(&hds.map_epoch);
	int64_t mine = -1;
	/* The near table is indexed by other bits of the hash than the far one. */
	int64_t id = probe(near, NEAR_SLOTS - 1, NEAR_PROBES, hash >> 32, hash, epoch, f, depth, flags, &mine, fresh);

	if (id < 0 && mine != -2)   /* every far slot full cannot happen: nslots >= 2 * max */
		id = probe(slots, slot_mask, slot_mask + 1, hash, hash, epoch, f, depth, flags, &mine, fresh);
	if (id < 0 && mine == -2)
		atomic_add_relaxed(&hds.dropped_stacks, 1);
	return id;
}

struct hds_stack *hds_stack_get(uint32_t id)
{
	return &records[id];
}

const uintptr_t *hds_stack_frames(const struct hds_stack *s)
{
	return frames + s->frames_off;
}

uint32_t hds_stacks_count(void)
{
	uint32_t n = atomic_load_acquire(&next_id);
	return n < max_records ? n : max_records;
}

uint64_t hds_stacks_resident(void)
{
	return hds_resident(records, sizeof *records * max_records) +
	       hds_resident(frames, sizeof *frames * max_frames) +
	       hds_resident((const void *)slots, sizeof *slots * (slot_mask + 1)) +
	       hds_resident((const void *)near, sizeof *near * NEAR_SLOTS);
}
