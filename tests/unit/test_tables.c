/*
 * test_tables.c - the shim's two lock-free tables against trivial reference
 * models: random operation sequences, compared after every step, then the
 * same tables hammered by threads (this file is also built with TSan).
 */
#include "internal.h"
#include "testhelp.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* What the tables need from the rest of the shim. */
struct hds_globals hds;

void *hds_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void hds_unmap(void *p, size_t size)
{
	munmap(p, size);
}

__thread int hds_tl_nopark;

uint64_t hds_resident(const void *addr, uint64_t len)
{
	(void)addr;
	return len;
}

uint64_t hds_now_ns(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* threads.c keeps the unwinder's memory in each thread's bundle: none here. */
size_t hds_capture_mem_size(void)
{
	return 0;
}

void hds_capture_mem_reset(void *mem)
{
	(void)mem;
}

uint64_t hds_capture_mem_memo_hits(const void *mem)
{
	(void)mem;
	return 0;
}

/* The module map, as a model: address ranges [lo, hi) that changed (a
 * module loaded or unloaded there) in a given epoch. */
static struct { uintptr_t lo, hi; uint32_t epoch; } changes[8];
static int nchanges;

int hds_modules_changed(uint32_t since, const uintptr_t *frames, int depth)
{
	for (int c = 0; c < nchanges; c++)
		for (int k = 0; k < depth; k++)
			if (changes[c].epoch > since && frames[k] >= changes[c].lo && frames[k] < changes[c].hi)
				return 1;
	return 0;
}

static uint64_t rng_state = 88172645463325252u;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- stack interning ---------------------------------------------------- */

#define NSTACKS 600
#define THREADS 8   /* in the tests of concurrent use */

struct model_stack {
	uintptr_t frames[64];
	int depth;
	unsigned flags;
	int64_t id;   /* -1 until first interned */
};

static struct model_stack pool[NSTACKS];

static void make_pool(void)
{
	for (int i = 0; i < NSTACKS; i++) {
		struct model_stack *s = &pool[i];
		/* Shared outer frames and a few equal-prefix pairs, as real
		 * programs have. */
		s->depth = 1 + (int)(rnd() % 60);
		for (int k = 0; k < s->depth; k++)
			s->frames[k] = k < s->depth - 3 && i > 0 && rnd() % 4 == 0 ? pool[i - 1].frames[k]
										: 0x400000 + (rnd() % 4096) * 16;
		s->flags = rnd() % 8 == 0 ? HD_STACK_TRUNCATED : 0;
		s->id = -1;
	}
	/* Two stacks that differ only in depth, and two only in flags. */
	pool[1] = pool[0];
	pool[1].depth = pool[0].depth > 1 ? pool[0].depth - 1 : 2;
	pool[3] = pool[2];
	pool[3].flags = pool[2].flags ^ HD_STACK_TRUNCATED;
}

static int same_stack(const struct model_stack *a, const struct model_stack *b)
{
	return a->depth == b->depth && a->flags == b->flags &&
	       memcmp(a->frames, b->frames, sizeof a->frames[0] * (size_t)a->depth) == 0;
}

static void interning_matches_a_reference_model(void)
{
	ASSERT_EQ(hds_stacks_init(4096), 0);
	make_pool();
	for (int step = 0; step < 50000; step++) {
		struct model_stack *s = &pool[rnd() % NSTACKS];
		int fresh = 0;
		int64_t id = hds_stack_intern(s->frames, s->depth, s->flags, &fresh);
		ASSERT_TRUE(id >= 0);
		/* The model: equal stacks share one id, from the first insert. */
		int64_t want = -1;
		for (int k = 0; k < NSTACKS; k++)
			if (pool[k].id >= 0 && same_stack(&pool[k], s))
				want = pool[k].id;
		if (want < 0) {
			ASSERT_EQ(fresh, 1);
			for (int k = 0; k < NSTACKS; k++)
				if (same_stack(&pool[k], s))
					pool[k].id = id;
		} else {
			ASSERT_EQ(fresh, 0);
			ASSERT_EQ(id, want);
		}
		const struct hds_stack *rec = hds_stack_get((uint32_t)id);
		ASSERT_EQ(rec->depth, s->depth);
		ASSERT_EQ(rec->flags, s->flags);
		ASSERT_EQ(atomic_load(&rec->ready), 1);
		ASSERT_EQ(memcmp(hds_stack_frames(rec), s->frames, sizeof s->frames[0] * (size_t)s->depth), 0);
	}
	/* Distinct stacks got distinct ids. */
	for (int a = 0; a < NSTACKS; a++)
		for (int b = a + 1; b < NSTACKS; b++)
			if (pool[a].id >= 0 && pool[b].id >= 0 && !same_stack(&pool[a], &pool[b]))
				ASSERT_TRUE(pool[a].id != pool[b].id);
}

static void a_known_hash_chain_interns_to_the_same_id(void)
{
	uintptr_t f[5] = { 0x11, 0x22, 0x33, 0x44, 0x55 };
	int fresh = 0;

	ASSERT_EQ(hds_stacks_init(64), 0);
	int64_t a = hds_stack_intern(f, 5, 0, &fresh);
	uint64_t chain = HDS_HASH_SEED;
	for (int i = 4; i >= 0; i--)
		chain = hds_hash_step(chain, f[i]);
	fresh = 0;
	ASSERT_EQ(hds_stack_intern_chain(f, 5, 0, chain, &fresh), a);
	ASSERT_EQ(fresh, 0);
	/* The same frames with another depth or flags are other stacks. */
	ASSERT_TRUE(hds_stack_intern(f, 4, 0, &fresh) != a);
	ASSERT_TRUE(hds_stack_intern(f, 5, HD_STACK_TRUNCATED, &fresh) != a);
}

/* More stacks than the near table has slots (65,536): the far table takes
 * the rest, and each stack is found where it went. */
static void stacks_beyond_the_near_table_are_each_interned_once(void)
{
	enum { N = 200000 };
	int fresh;

	ASSERT_EQ(hds_stacks_init(N), 0);
	for (int round = 0; round < 2; round++)
		for (uintptr_t i = 0; i < N; i++) {
			uintptr_t f[2] = { 0x400000 + i, 0x500000 + i * 7 };
			fresh = 0;
			ASSERT_EQ(hds_stack_intern(f, 2, 0, &fresh), (int64_t)i);
			ASSERT_EQ(fresh, round == 0);
		}
	ASSERT_EQ(hds_stacks_count(), N);
}

#define SHARED_STACKS 100000
static int32_t seen_ids[THREADS][SHARED_STACKS];

static void *intern_all(void *arg)
{
	uintptr_t t = (uintptr_t)arg;

	/* Every thread the same stacks, each in its own order. */
	for (uint64_t k = 0; k < SHARED_STACKS; k++) {
		uint64_t i = (k * 7919 + t * 104729) % SHARED_STACKS;
		uintptr_t f[3] = { 0x400000 + i, 0x600000, 0x700000 + i * 3 };
		int fresh = 0;
		int64_t id = hds_stack_intern(f, 3, 0, &fresh);
		if (id < 0)
			abort();
		seen_ids[t][i] = (int32_t)id;
	}
	return NULL;
}

static void eight_threads_interning_the_same_stacks_agree_on_every_id(void)
{
	pthread_t th[THREADS];

	ASSERT_EQ(hds_stacks_init(4 * SHARED_STACKS), 0);
	for (uintptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, intern_all, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (int i = 0; i < SHARED_STACKS; i++)
		for (int t = 1; t < THREADS; t++)
			ASSERT_EQ(seen_ids[t][i], seen_ids[0][i]);
	/* Each stack published once: in the near table or the far, not both. */
	int published = 0;
	for (uint32_t id = 0; id < hds_stacks_count(); id++)
		published += atomic_load(&hds_stack_get(id)->ready) == 1;
	ASSERT_EQ(published, SHARED_STACKS);
}

static void a_full_stack_table_refuses_new_stacks_and_counts_them(void)
{
	uintptr_t f[2] = { 0x1000, 0 };
	int fresh = 0;

	ASSERT_EQ(hds_stacks_init(16), 0);
	atomic_store(&hds.dropped_stacks, 0);
	for (int i = 0; i < 16; i++) {
		f[1] = (uintptr_t)i;
		ASSERT_EQ(hds_stack_intern(f, 2, 0, &fresh), i);
	}
	f[1] = 99;
	ASSERT_EQ(hds_stack_intern(f, 2, 0, &fresh), -1);
	ASSERT_EQ(atomic_load(&hds.dropped_stacks), 1);
	/* Known stacks still resolve. */
	f[1] = 5;
	ASSERT_EQ(hds_stack_intern(f, 2, 0, &fresh), 5);
	ASSERT_EQ(hds_stacks_count(), 16);
}

static void a_stack_through_an_unloaded_module_is_interned_anew(void)
{
	uintptr_t in_lib[3] = { 0x7000, 0x500010, 0x500020 };   /* frames 1, 2 in the library */
	uintptr_t outside[2] = { 0x7000, 0x9000 };
	int fresh = 0;

	ASSERT_EQ(hds_stacks_init(64), 0);
	atomic_store(&hds.map_epoch, 0);
	nchanges = 0;
	int64_t a = hds_stack_intern(in_lib, 3, 0, &fresh);
	int64_t b = hds_stack_intern(outside, 2, 0, &fresh);
	ASSERT_EQ(hds_stack_intern(in_lib, 3, 0, &fresh), a);

	/* The library at 0x500000 is unloaded: epoch 1. */
	changes[nchanges++] = (typeof(changes[0])){ 0x500000, 0x600000, 1 };
	atomic_store(&hds.map_epoch, 1);
	fresh = 0;
	int64_t a2 = hds_stack_intern(in_lib, 3, 0, &fresh);
	ASSERT_TRUE(a2 != a);
	ASSERT_EQ(fresh, 1);
	ASSERT_EQ(atomic_load(&hds_stack_get((uint32_t)a)->dead), 1);
	ASSERT_EQ(atomic_load(&hds_stack_get((uint32_t)a)->epoch), 0);
	ASSERT_EQ(atomic_load(&hds_stack_get((uint32_t)a2)->epoch), 1);
	ASSERT_EQ(hds_stack_intern(in_lib, 3, 0, &fresh), a2);
	/* A stack with no frame there keeps its id; its epoch moves on. */
	fresh = 0;
	ASSERT_EQ(hds_stack_intern(outside, 2, 0, &fresh), b);
	ASSERT_EQ(fresh, 0);
	ASSERT_EQ(atomic_load(&hds_stack_get((uint32_t)b)->epoch), 1);

	/* Another library at the same place goes too (epoch 2): the stack of
	 * epoch 1 dies in turn; the one of epoch 0 stays dead. */
	changes[nchanges++] = (typeof(changes[0])){ 0x500000, 0x600000, 2 };
	atomic_store(&hds.map_epoch, 2);
	int64_t a3 = hds_stack_intern(in_lib, 3, 0, &fresh);
	ASSERT_TRUE(a3 != a2 && a3 != a);
	ASSERT_EQ(hds_stack_intern(outside, 2, 0, &fresh), b);
	nchanges = 0;
	atomic_store(&hds.map_epoch, 0);
}

/* ---- live blocks -------------------------------------------------------- */

#define NADDR 5000

struct model_block { uintptr_t addr; uint64_t entry; };
static struct model_block blocks[NADDR];

static void check_live_table_against_the_model(int sparse)
{
	ASSERT_EQ(hds_live_init(5, sparse), 0);
	memset((void *)hds_live_filter, 0, sizeof hds_live_filter);
	hds.cfg.sample_bytes = sparse ? 512 << 10 : 0;   /* the sparse map is sampled mode's */
	/* Addresses in a few distant regions, 32-byte granules apart, half of
	 * them 16 bytes into their granule (as glibc's blocks can be). */
	static const uintptr_t regions[] = { 0x555555554000, 0x7f0000000000, 0x10000, 0x7ffffff00000 };
	for (int i = 0; i < NADDR; i++) {
		blocks[i].addr = regions[i % 4] + (uintptr_t)(i / 4) * 96 + (uintptr_t)(i % 3) * 32 + (uintptr_t)(i % 2) * 16;
		blocks[i].entry = 0;
	}
	for (int step = 0; step < 200000; step++) {
		struct model_block *b = &blocks[rnd() % NADDR];
		if (b->entry == 0 || rnd() % 2) {
			if (b->entry)
				continue;   /* an address is live at most once */
			uint32_t stack = (uint32_t)(rnd() % 1000);
			/* Blocks of 4 KiB and more are 4 KiB apart in real heaps:
			 * only every 128th address (4 KiB apart) gets one. */
			uint64_t size = (b - blocks) % 512 == 0 ? 4096 + rnd() % (UINT64_C(1) << 33) : rnd() % 4096;
			ASSERT_EQ(hds_live_insert((void *)b->addr, stack, size), 0);
			b->entry = ((uint64_t)stack + 1) << HDS_LIVE_SIZE_BITS | size;
			ASSERT_EQ(hds_entry_stack(b->entry), stack);
			ASSERT_EQ(hds_entry_size(b->entry), size);
		} else {
			uint64_t got = hds_live_remove((void *)b->addr);
			ASSERT_EQ(got, b->entry);
			b->entry = 0;
		}
		/* A free may skip the maps only for a block not recorded. */
		if (step % 4096 == 0)
			for (int i = 0; i < NADDR; i++)
				if (blocks[i].entry)
					ASSERT_EQ(hds_live_maybe((void *)blocks[i].addr), 1);
	}
	for (int i = 0; i < NADDR; i++)
		ASSERT_EQ(hds_live_remove((void *)blocks[i].addr), blocks[i].entry);
	/* Everything is gone; unknown pointers find nothing. */
	for (int i = 0; i < NADDR; i++)
		ASSERT_EQ(hds_live_remove((void *)blocks[i].addr), 0);
	ASSERT_EQ(hds_live_remove((void *)0x123456780), 0);
	hds.cfg.sample_bytes = 0;
}

/* Sampled mode's filter: a count per page of addresses (pages far apart
 * share one), exact below 255, stuck at 255 from there (never a block
 * recorded and said absent). */
static void sampled_frees_skip_only_blocks_never_recorded(void)
{
	enum { N = 300 };
	static uintptr_t same[N];
	int n = 0;

	ASSERT_EQ(hds_live_init(5, 1), 0);
	memset((void *)hds_live_filter, 0, sizeof hds_live_filter);
	hds.cfg.sample_bytes = 512 << 10;
	/* N addresses 32 bytes apart that share one count. */
	const _Atomic uint8_t *target = hds_live_filter_of((void *)0x200000);
	for (uintptr_t a = 0x200000; n < N; a += 32)
		if (hds_live_filter_of((void *)a) == target)
			same[n++] = a;
	ASSERT_EQ(hds_live_maybe((void *)same[0]), 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(hds_live_insert((void *)same[i], 7, 24), 0);
	ASSERT_EQ(hds_live_maybe((void *)same[5]), 1);   /* shares the count: looked up, not found */
	ASSERT_EQ(hds_live_remove((void *)same[5]), 0);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(hds_live_maybe((void *)same[i]), 1);
		ASSERT_EQ(hds_entry_stack(hds_live_remove((void *)same[i])), 7);
	}
	ASSERT_EQ(hds_live_maybe((void *)same[0]), 0);
	/* Past 255 the count sticks: every block is still looked up. */
	for (int i = 0; i < N; i++)
		ASSERT_EQ(hds_live_insert((void *)same[i], 9, 24), 0);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(hds_live_maybe((void *)same[i]), 1);
		ASSERT_EQ(hds_entry_stack(hds_live_remove((void *)same[i])), 9);
	}
	ASSERT_EQ(hds_live_maybe((void *)same[0]), 1);
	hds.cfg.sample_bytes = 0;
}

static void live_table_matches_a_reference_model(void)
{
	check_live_table_against_the_model(0);
}

/* Sampled mode: pages count their blocks, and a free skips empty ones. */
static void sparse_live_table_matches_a_reference_model(void)
{
	check_live_table_against_the_model(1);
}

static void live_table_refuses_what_it_cannot_hold(void)
{
	ASSERT_EQ(hds_live_init(5, 0), 0);
	ASSERT_EQ(hds_live_insert((void *)(UINT64_C(1) << 47), 1, 10), UINT64_MAX);
	ASSERT_EQ(hds_live_insert((void *)0x10000, HDS_LIVE_MAX_STACK + 1, 10), UINT64_MAX);
	ASSERT_EQ(hds_live_insert((void *)0x10000, 1, HDS_LIVE_PAYLOAD_MAX + 1), UINT64_MAX);
	ASSERT_EQ(hds_live_insert((void *)0x10000, 1, hds_live_payload(HDS_LIVE_MAX_SIZE, HDS_KIND_NEW_ARRAY)), 0);
	uint64_t e = hds_live_remove((void *)0x10000);
	ASSERT_EQ(hds_entry_size(e), HDS_LIVE_MAX_SIZE);
	ASSERT_EQ(hds_entry_kind(e), HDS_KIND_NEW_ARRAY);
}

/* A small block of a stack id the 32-bit slots cannot hold goes to the
 * large table, and a free that looks in the small map only finds it. */
static void a_stack_id_too_large_for_a_slot_spills_to_the_large_table(void)
{
	ASSERT_EQ(hds_live_init(5, 0), 0);
	ASSERT_EQ(hds_live_insert((void *)0x30000, (UINT32_C(1) << 20) + 5, 24), 0);
	ASSERT_EQ(hds_live_insert((void *)0x30020, 77, 24), 0);
	uint64_t e = hds_live_remove_in((void *)0x30000, HDS_LIVE_FINE);
	ASSERT_EQ(hds_entry_stack(e), (UINT32_C(1) << 20) + 5);
	ASSERT_EQ(hds_entry_size(e), 24);
	ASSERT_EQ(hds_entry_stack(hds_live_remove_in((void *)0x30020, HDS_LIVE_FINE)), 77);
	ASSERT_EQ(hds_live_remove((void *)0x30000), 0);
}

/* Another allocator's map (16-byte granules): blocks 8 bytes apart share a
 * slot; the second goes to the large table, and each is found again. */
static void neighbours_in_one_granule_are_both_kept(void)
{
	ASSERT_EQ(hds_live_init(4, 0), 0);
	for (uintptr_t i = 0; i < 1000; i++)   /* the odd ones find their slot taken */
		ASSERT_EQ(hds_live_insert((void *)(0x40000 + i * 8), (uint32_t)i, 8), 0);
	for (uintptr_t i = 0; i < 1000; i += 2)
		ASSERT_EQ(hds_entry_stack(hds_live_remove((void *)(0x40000 + i * 8))), i);
	for (uintptr_t i = 0; i < 1000; i += 2)
		ASSERT_EQ(hds_live_insert((void *)(0x40000 + i * 8), (uint32_t)i + 7, 8), 0);
	for (uintptr_t i = 0; i < 1000; i++) {
		uint64_t e = hds_live_remove_in((void *)(0x40000 + i * 8), HDS_LIVE_FINE);
		ASSERT_EQ(hds_entry_stack(e), i % 2 ? i : i + 7);
		ASSERT_EQ(hds_entry_size(e), 8);
	}
	for (uintptr_t i = 0; i < 1000; i++)
		ASSERT_EQ(hds_live_remove((void *)(0x40000 + i * 8)), 0);
}

static void an_unseen_free_is_reported_by_the_next_insert(void)
{
	ASSERT_EQ(hds_live_init(5, 0), 0);
	ASSERT_EQ(hds_live_insert((void *)0x20000, 7, 100), 0);
	/* The block was freed without us seeing it, and the address reused. */
	uint64_t old = hds_live_insert((void *)0x20000, 9, 50);
	ASSERT_EQ(hds_entry_stack(old), 7);
	ASSERT_EQ(hds_entry_size(old), 100);
}

static void reclaimed_pages_lose_no_block(void)
{
	ASSERT_EQ(hds_live_init(5, 0), 0);
	/* Fill pages, empty most of them, reclaim: what is live stays. */
	for (uintptr_t i = 0; i < 100000; i++)
		ASSERT_EQ(hds_live_insert((void *)(0x200000000 + i * 32), 1, 16), 0);
	for (uintptr_t i = 0; i < 100000; i++)
		if (i % 5000)
			ASSERT_TRUE(hds_live_remove((void *)(0x200000000 + i * 32)) != 0);
	ASSERT_TRUE(hds_live_reclaim() > 0);
	for (uintptr_t i = 0; i < 100000; i++)
		ASSERT_EQ(hds_entry_size(hds_live_remove((void *)(0x200000000 + i * 32))), i % 5000 ? 0 : 16);
}

static struct model_block seen[NADDR];
static uint64_t nseen;

static void note_block(void *ctx, uintptr_t addr, uint64_t entry)
{
	(void)ctx;
	ASSERT_TRUE(nseen < NADDR);
	seen[nseen].addr = addr;
	seen[nseen++].entry = entry;
}

static int by_addr(const void *a, const void *b)
{
	uintptr_t x = ((const struct model_block *)a)->addr, y = ((const struct model_block *)b)->addr;
	return x < y ? -1 : x > y;
}

/* The exit's reachability scan asks the maps for every block: each comes
 * back once, with its exact address (16 bytes into a granule too) and its
 * entry; the small map's in address order. */
static void every_live_block_comes_back_with_its_address(void)
{
	ASSERT_EQ(hds_live_init(5, 0), 0);
	ASSERT_EQ(hds_large_init(), 0);
	uint64_t n = 0;
	for (int i = 0; i < NADDR; i++) {
		uintptr_t a = 0x7f1200000000 + (uintptr_t)i * 4128 + (uintptr_t)(i % 2) * 16;
		uint64_t size = i % 7 == 0 ? 300 + (uint64_t)i : (uint64_t)(i % 250);
		if (i % 5 == 3)
			continue;
		ASSERT_EQ(hds_live_insert((void *)a, (uint32_t)i, size), 0);
		blocks[n].addr = a;
		blocks[n++].entry = ((uint64_t)i + 1) << HDS_LIVE_SIZE_BITS | size;
	}
	nseen = 0;
	uint64_t small = hds_live_each_small(note_block, NULL);
	for (uint64_t j = 1; j < small; j++)
		ASSERT_TRUE(seen[j - 1].addr < seen[j].addr);
	ASSERT_EQ(small + hds_large_each(note_block, NULL), n);
	qsort(seen, nseen, sizeof *seen, by_addr);
	for (uint64_t j = 0; j < n; j++) {
		ASSERT_EQ(seen[j].addr, blocks[j].addr);
		ASSERT_EQ(seen[j].entry, blocks[j].entry);
		ASSERT_EQ(hds_live_remove((void *)blocks[j].addr), blocks[j].entry);
	}
}

/* ---- threads ------------------------------------------------------------ */

#define PER_THREAD 20000

static _Atomic(uintptr_t) handoff[1024];
static _Atomic uint64_t inserted_bytes, removed_bytes;

static void *hammer(void *arg)
{
	uintptr_t t = (uintptr_t)arg;
	uint64_t seed = t * 7919 + 1;

	for (int i = 0; i < PER_THREAD; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		/* Intern one of 64 shared stacks, concurrently with the others. */
		uintptr_t f[3] = { 0x1000 + (seed >> 58), 0x2000, 0x3000 };
		int fresh = 0;
		int64_t id = hds_stack_intern(f, 3, 0, &fresh);
		if (id < 0)
			abort();
		/* A unique address per (thread, i): live at most once. */
		uintptr_t addr = 0x100000000 + (t * PER_THREAD + (uintptr_t)i) * 32;
		uint64_t size = 1 + (seed >> 40) % 1000;
		uint64_t prev_entry = hds_live_insert((void *)addr, (uint32_t)id, size);
		if (prev_entry != 0) {
			fprintf(stderr, "insert of %#lx found %#llx\n", (unsigned long)addr, (unsigned long long)prev_entry);
			abort();
		}
		atomic_fetch_add(&inserted_bytes, size);
		/* Hand the block to whichever thread takes the slot next, and
		 * free what was there: frees cross threads. */
		uintptr_t prev = atomic_exchange(&handoff[(seed >> 20) % 1024], addr);
		if (prev) {
			uint64_t e = hds_live_remove((void *)prev);
			if (!e) {
				fprintf(stderr, "remove of %#lx found nothing\n", (unsigned long)prev);
				abort();
			}
			atomic_fetch_add(&removed_bytes, hds_entry_size(e));
		}
	}
	return NULL;
}

static _Atomic int hammering;

static void *reclaimer(void *arg)
{
	(void)arg;
	while (atomic_load(&hammering))
		hds_live_reclaim();
	return NULL;
}

/* Each thread inserts its own large blocks (blocks_large.c's hash table),
 * all kept, then removes another thread's: the table grows while the
 * reclaimer copies and frees. */
#define GROW_PER_THREAD 30000
static _Atomic int grow_phase;

static void *grower(void *arg)
{
	uintptr_t t = (uintptr_t)arg;

	for (uintptr_t i = 0; i < GROW_PER_THREAD; i++) {
		uintptr_t addr = 0x300000000 + (t * GROW_PER_THREAD + i) * 8192;
		if (hds_live_insert((void *)addr, (uint32_t)t, 4096 + i % 100) != 0)
			abort();
		atomic_fetch_add(&inserted_bytes, 4096 + i % 100);
	}
	atomic_fetch_add(&grow_phase, 1);
	while (atomic_load(&grow_phase) < THREADS)
		sched_yield();
	uintptr_t other = (t + 1) % THREADS;
	for (uintptr_t i = 0; i < GROW_PER_THREAD; i++) {
		uintptr_t addr = 0x300000000 + (other * GROW_PER_THREAD + i) * 8192;
		uint64_t e = hds_live_remove((void *)addr);
		if (hds_entry_stack(e) != other || hds_entry_size(e) != 4096 + i % 100) {
			fprintf(stderr, "remove of %#lx found %#llx (dropped %llu)\n", (unsigned long)addr, (unsigned long long)e, (unsigned long long)atomic_load(&hds.dropped_allocs));
			abort();
		}
		atomic_fetch_add(&removed_bytes, hds_entry_size(e));
	}
	return NULL;
}

static void the_large_block_table_grows_and_shrinks_under_eight_threads(void)
{
	pthread_t th[THREADS], rec;

	ASSERT_EQ(hds_live_init(5, 0), 0);
	atomic_store(&inserted_bytes, 0);
	atomic_store(&removed_bytes, 0);
	atomic_store(&grow_phase, 0);
	atomic_store(&hammering, 1);
	pthread_create(&rec, NULL, reclaimer, NULL);
	for (uintptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, grower, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&hammering, 0);
	pthread_join(rec, NULL);
	ASSERT_EQ(atomic_load(&inserted_bytes), atomic_load(&removed_bytes));
	/* Empty now: after the writer's passes, one table of the minimum size. */
	hds_live_reclaim();
	hds_live_reclaim();
	ASSERT_EQ(hds_large_resident(), 4096 * 16);
}

static void check_tables_under_eight_threads(int sparse)
{
	pthread_t th[THREADS], rec;

	ASSERT_EQ(hds_stacks_init(4096), 0);
	ASSERT_EQ(hds_live_init(5, sparse), 0);
	atomic_store(&inserted_bytes, 0);
	atomic_store(&removed_bytes, 0);
	atomic_store(&hammering, 1);
	pthread_create(&rec, NULL, reclaimer, NULL);
	for (uintptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, hammer, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&hammering, 0);
	pthread_join(rec, NULL);
	for (int i = 0; i < 1024; i++) {
		uintptr_t a = atomic_exchange(&handoff[i], 0);
		if (a) {
			uint64_t e = hds_live_remove((void *)a);
			ASSERT_TRUE(e != 0);
			atomic_fetch_add(&removed_bytes, hds_entry_size(e));
		}
	}
	ASSERT_EQ(atomic_load(&inserted_bytes), atomic_load(&removed_bytes));
	/* 64 distinct stacks, each interned once. */
	int published = 0;
	for (uint32_t id = 0; id < hds_stacks_count(); id++)
		published += atomic_load(&hds_stack_get(id)->ready) == 1;
	ASSERT_EQ(published, 64);
}

static void tables_stay_exact_under_eight_threads_and_reclaims(void)
{
	check_tables_under_eight_threads(0);
}

static void sparse_tables_stay_exact_under_eight_threads_and_reclaims(void)
{
	check_tables_under_eight_threads(1);
}

int main(void)
{
	atomic_store(&hds.state, HDS_ACTIVE);
	hds_threads_init(1u << 20);
	static const struct unit_test tests[] = {
		{ "interning matches a reference model", interning_matches_a_reference_model },
		{ "a known hash chain interns to the same id", a_known_hash_chain_interns_to_the_same_id },
		{ "stacks beyond the near table are each interned once", stacks_beyond_the_near_table_are_each_interned_once },
		{ "eight threads interning the same stacks agree on every id",
		  eight_threads_interning_the_same_stacks_agree_on_every_id },
		{ "a full stack table refuses new stacks and counts them", a_full_stack_table_refuses_new_stacks_and_counts_them },
		{ "a stack through an unloaded module is interned anew", a_stack_through_an_unloaded_module_is_interned_anew },
		{ "live table matches a reference model", live_table_matches_a_reference_model },
		{ "live table refuses what it cannot hold", live_table_refuses_what_it_cannot_hold },
		{ "an unseen free is reported by the next insert", an_unseen_free_is_reported_by_the_next_insert },
		{ "neighbours in one granule are both kept", neighbours_in_one_granule_are_both_kept },
		{ "a stack id too large for a slot spills to the large table",
		  a_stack_id_too_large_for_a_slot_spills_to_the_large_table },
		{ "sparse live table matches a reference model", sparse_live_table_matches_a_reference_model },
		{ "sampled frees skip only blocks never recorded", sampled_frees_skip_only_blocks_never_recorded },
		{ "reclaimed pages lose no block", reclaimed_pages_lose_no_block },
		{ "every live block comes back with its address", every_live_block_comes_back_with_its_address },
		{ "tables stay exact under eight threads and reclaims", tables_stay_exact_under_eight_threads_and_reclaims },
		{ "sparse tables stay exact under eight threads and reclaims", sparse_tables_stay_exact_under_eight_threads_and_reclaims },
		{ "the large-block table grows and shrinks under eight threads",
		  the_large_block_table_grows_and_shrinks_under_eight_threads },
	};
	return run_unit_tests("tables", tests, sizeof tests / sizeof tests[0]);
}
