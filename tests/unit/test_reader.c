/*
 * test_reader.c - the snapshot reader on well-formed and broken bytes, and
 * the size formatting and parsing helpers.  Built with ASan and UBSan: a
 * broken file must end in an error return, never in a bad read.
 */
#include "snapshot.h"
#include "testhelp.h"
#include "util.h"

#include <stdlib.h>

/* ---- a small well-formed snapshot ------------------------------------- */

struct buf { unsigned char b[4096]; size_t n; };

static void put32(struct buf *b, uint32_t v) { hd_put_u32(b->b + b->n, v); b->n += 4; }
static void put64(struct buf *b, uint64_t v) { hd_put_u64(b->b + b->n, v); b->n += 8; }
static void putstr(struct buf *b, const char *s) { put32(b, (uint32_t)strlen(s)); memcpy(b->b + b->n, s, strlen(s)); b->n += strlen(s); }

static size_t begin_section(struct buf *b, uint32_t tag)
{
	put32(b, tag);
	put32(b, 0);
	put64(b, 0);
	return b->n;
}

static void end_section(struct buf *b, size_t start)
{
	hd_put_u64(b->b + start - 8, b->n - start);
}

/* Every truncation of b is refused, each read from a copy of exactly its
 * length (so that ASan sees an overread). */
static void assert_truncations_refused(const struct buf *b, const char *name)
{
	struct snapshot s;

	for (size_t n = 0; n < b->n; n++) {
		unsigned char *copy = malloc(n ? n : 1);
		memcpy(copy, b->b, n);
		int rc = snapshot_parse(name, copy, n, &s);
		snapshot_release(&s);
		free(copy);
		if (rc != -1)
			printf("  truncated to %zu bytes was accepted\n", n);
		ASSERT_EQ(rc, -1);
	}
}

/* Every single-bit change of b is read, refused or not, without a fault
 * (ASan and UBSan watch); b is as it was after. */
static void survive_bit_flips(struct buf *b, const char *name)
{
	struct snapshot s;

	for (size_t i = 0; i < b->n; i++)
		for (int bit = 0; bit < 8; bit++) {
			b->b[i] ^= (unsigned char)(1 << bit);
			snapshot_parse(name, b->b, b->n, &s);
			snapshot_release(&s);
			b->b[i] ^= (unsigned char)(1 << bit);
		}
}

static void build(struct buf *b)
{
	size_t s;

	b->n = 0;
	memcpy(b->b, HD_MAGIC, 8);
	b->n = 8;
	put32(b, 1);   /* the version 1 layout */
	put32(b, 0);

	s = begin_section(b, HD_SEC_META);
	for (int i = 0; i < HD_META_NFIELDS; i++)
		put64(b, (uint64_t)i * 10);
	end_section(b, s);

	s = begin_section(b, HD_SEC_STRINGS);
	put32(b, 4);
	putstr(b, "a label");
	putstr(b, "/bin/prog");
	putstr(b, "prog");
	putstr(b, "--flag");
	end_section(b, s);

	s = begin_section(b, HD_SEC_MODULES);
	put32(b, 1);
	put64(b, 0x400000);
	put32(b, HD_MOD_MAIN);
	put32(b, 4);
	memcpy(b->b + b->n, "\xde\xad\xbe\xef", 4);
	b->n += 4;
	put32(b, 1);
	put64(b, 0x401000);
	put64(b, 0x2000);
	put64(b, 0x1000);
	put32(b, 5);
	putstr(b, "/bin/prog");
	end_section(b, s);

	s = begin_section(b, HD_SEC_STACKS);
	put32(b, 2);
	for (int k = 0; k < 2; k++) {
		put32(b, (uint32_t)k);
		b->b[b->n++] = (unsigned char)(k + 1); b->b[b->n++] = 0;   /* depth */
		b->b[b->n++] = 0; b->b[b->n++] = 0;                        /* flags */
		put64(b, 100 * (uint64_t)(k + 1));
		put64(b, (uint64_t)k + 1);
		put64(b, 1000);
		put64(b, 10);
		for (int f = 0; f <= k; f++)
			put64(b, 0x401100 + (uint64_t)f);
	}
	end_section(b, s);

	begin_section(b, 0x77);  /* unknown: skipped */
	begin_section(b, HD_SEC_END);
}

static void a_well_formed_snapshot_reads_back_exactly(void)
{
	struct buf b;
	struct snapshot s;

	build(&b);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), 0);
	ASSERT_EQ(s.meta[HD_META_PID], 0);
	ASSERT_EQ(s.meta[HD_META_LIVE_BYTES], 10 * HD_META_LIVE_BYTES);
	ASSERT_STR(s.label, "a label");
	ASSERT_STR(s.exe, "/bin/prog");
	ASSERT_EQ(s.argc, 2);
	ASSERT_STR(s.argv[1], "--flag");
	ASSERT_EQ(s.nmodules, 1);
	ASSERT_EQ(s.modules[0].build_id_len, 4);
	ASSERT_EQ(s.modules[0].seg[0].start, 0x401000);
	ASSERT_EQ(s.nstacks, 2);
	ASSERT_EQ(s.stacks[1].depth, 2);
	ASSERT_EQ(s.stacks[1].live_bytes, 200);
	ASSERT_EQ(s.stacks[1].frames[1], 0x401101);
	ASSERT_TRUE(snapshot_module_of(&s, 0x401fff, 0) == &s.modules[0]);
	ASSERT_TRUE(snapshot_module_of(&s, 0x403000, 0) == NULL);
	snapshot_release(&s);
}

/* Two libraries mapped at 0x7000 one after the other (epochs 0 and 1),
 * a stack of each, and a mismatched release. */
static void build_reloaded(struct buf *b)
{
	size_t s;

	memcpy(b->b, HD_MAGIC, 8);
	b->n = 8;
	put32(b, 1);   /* the version 1 layout */
	put32(b, 0);
	s = begin_section(b, HD_SEC_META);
	for (int i = 0; i < HD_META_NFIELDS; i++)
		put64(b, i == HD_META_MISMATCHED_FREES ? 3 : 0);
	end_section(b, s);
	s = begin_section(b, HD_SEC_MODULES);
	put32(b, 2);
	for (int m = 0; m < 2; m++) {
		put64(b, 0x7000);
		put32(b, HD_MOD_UNLOADED);
		put32(b, 0);              /* no build-id */
		put32(b, 1);
		put64(b, 0x7000);
		put64(b, 0x1000);
		put64(b, 0);
		put32(b, 5);
		putstr(b, m ? "/lib/b.so" : "/lib/a.so");
	}
	end_section(b, s);
	s = begin_section(b, HD_SEC_MODULE_EPOCHS);
	put32(b, 2);
	put32(b, 0); put32(b, 1);     /* a.so: epoch 0 */
	put32(b, 1); put32(b, 2);     /* b.so: epoch 1 */
	end_section(b, s);
	s = begin_section(b, HD_SEC_STACKS);
	put32(b, 2);
	for (int k = 1; k >= 0; k--) {   /* ids out of order: the reader sorts */
		put32(b, (uint32_t)k);
		b->b[b->n++] = 1; b->b[b->n++] = 0;
		b->b[b->n++] = 0; b->b[b->n++] = 0;
		put64(b, 10); put64(b, 1); put64(b, 10); put64(b, 1);
		put64(b, 0x7010);
	}
	end_section(b, s);
	s = begin_section(b, HD_SEC_STACK_EPOCHS);
	put32(b, 1);
	put32(b, 1); put32(b, 1);
	end_section(b, s);
	s = begin_section(b, HD_SEC_MISMATCHES);
	put32(b, 1);
	put32(b, 1);                    /* allocated by stack 1 */
	b->b[b->n++] = HD_KIND_NEW_ARRAY;
	b->b[b->n++] = HD_KIND_MALLOC;
	b->b[b->n++] = 2; b->b[b->n++] = 0;   /* depth */
	put64(b, 96);
	put64(b, 0x7020);
	put64(b, 0x7030);
	end_section(b, s);
	begin_section(b, HD_SEC_END);
}

static void a_frame_names_the_module_mapped_there_in_its_stacks_epoch(void)
{
	struct buf b;
	struct snapshot s;

	build_reloaded(&b);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), 0);
	const struct hd_stack *a = snapshot_stack_by_id(&s, 0), *bs = snapshot_stack_by_id(&s, 1);
	ASSERT_TRUE(a && bs);
	ASSERT_EQ(a->epoch, 0);
	ASSERT_EQ(bs->epoch, 1);
	ASSERT_STR(snapshot_module_of(&s, 0x7010, a->epoch)->path, "/lib/a.so");
	ASSERT_STR(snapshot_module_of(&s, 0x7010, bs->epoch)->path, "/lib/b.so");
	/* An epoch no module covers: the first that covers the address. */
	ASSERT_STR(snapshot_module_of(&s, 0x7010, 5)->path, "/lib/a.so");
	ASSERT_EQ(s.meta[HD_META_MISMATCHED_FREES], 3);
	ASSERT_EQ(s.nmismatches, 1);
	ASSERT_EQ(s.mismatches[0].alloc_stack, 1);
	ASSERT_EQ(s.mismatches[0].alloc_kind, HD_KIND_NEW_ARRAY);
	ASSERT_EQ(s.mismatches[0].free_kind, HD_KIND_MALLOC);
	ASSERT_EQ(s.mismatches[0].size, 96);
	ASSERT_EQ(s.mismatches[0].depth, 2);
	ASSERT_EQ(s.mismatches[0].frames[1], 0x7030);
	snapshot_release(&s);

	/* Every truncation and single-byte change: an error or a clean read. */
	assert_truncations_refused(&b, "mem");
	survive_bit_flips(&b, "mem");
}

/* Version 2, building on nothing: two stacks' frames, their counters as
 * changes from zero (varints), one epoch. */
static void build_v2(struct buf *b)
{
	size_t s;

	memcpy(b->b, HD_MAGIC, 8);
	b->n = 8;
	put32(b, 2);
	put32(b, 0);
	s = begin_section(b, HD_SEC_META);
	for (int i = 0; i < HD_META_NFIELDS; i++)
		put64(b, i == HD_META_RUN_ID ? 77 : i == HD_META_SEQ ? 1 : 0);
	end_section(b, s);
	s = begin_section(b, HD_SEC_NEW_STACKS);
	put32(b, 2);
	for (uint32_t id = 3; id <= 5; id += 2) {   /* ids 3 and 5 */
		put32(b, id);
		b->b[b->n++] = 1; b->b[b->n++] = 0;
		b->b[b->n++] = 0; b->b[b->n++] = 0;
		put64(b, 0x401000 + id);
	}
	end_section(b, s);
	s = begin_section(b, HD_SEC_COUNTERS);
	put32(b, 2);
	/* id 3: +300 bytes, +2 blocks live, 500 bytes in 4 allocated */
	unsigned char *p = b->b + b->n;
	p = hd_put_varint(p, 3);
	p = hd_put_varint(p, hd_zigzag(300));
	p = hd_put_varint(p, hd_zigzag(2));
	p = hd_put_varint(p, hd_zigzag(500));
	p = hd_put_varint(p, hd_zigzag(4));
	/* id 5 (3 + 2): nothing live, 70000 bytes in 1 allocated */
	p = hd_put_varint(p, 2);
	p = hd_put_varint(p, hd_zigzag(0));
	p = hd_put_varint(p, hd_zigzag(0));
	p = hd_put_varint(p, hd_zigzag(70000));
	p = hd_put_varint(p, hd_zigzag(1));
	b->n = (size_t)(p - b->b);
	end_section(b, s);
	s = begin_section(b, HD_SEC_STACK_EPOCHS);
	put32(b, 1);
	put32(b, 5);
	put32(b, 2);
	end_section(b, s);
	begin_section(b, HD_SEC_END);
}

static void a_version_2_snapshot_without_a_base_reads_back_exactly(void)
{
	struct buf b;
	struct snapshot s;

	build_v2(&b);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), 0);
	ASSERT_EQ(s.version, 2);
	ASSERT_EQ(s.partial, 0);
	ASSERT_EQ(s.nstacks, 2);
	const struct hd_stack *a = snapshot_stack_by_id(&s, 3), *c = snapshot_stack_by_id(&s, 5);
	ASSERT_TRUE(a && c);
	ASSERT_EQ(a->live_bytes, 300);
	ASSERT_EQ(a->live_count, 2);
	ASSERT_EQ(a->alloc_bytes, 500);
	ASSERT_EQ(a->alloc_count, 4);
	ASSERT_EQ(c->alloc_bytes, 70000);
	ASSERT_EQ(c->epoch, 2);
	ASSERT_EQ(c->frames[0], 0x401005);
	snapshot_release(&s);
	assert_truncations_refused(&b, "mem");
	survive_bit_flips(&b, "mem");
	/* A base: the file alone is partial; its counters wait for the chain. */
	build_v2(&b);
	hd_put_u64(b.b + 16 + 16 + 8 * HD_META_BASE_SEQ, 1);
	hd_put_u64(b.b + 16 + 16 + 8 * HD_META_SEQ, 2);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), 0);
	ASSERT_EQ(s.partial, 1);
	ASSERT_EQ(s.ndeltas, 2);
	ASSERT_EQ(s.deltas[1].id, 5);
	snapshot_release(&s);
}

/* ---- REACH ------------------------------------------------------------ */

struct reach_rec {
	uint32_t id;
	uint64_t v[2 * HD_REACH_NKINDS];   /* bytes, count of each kind in turn */
};

/* Replace b's END section by a REACH section of status and records r[0..n),
 * then END again. */
static void put_reach(struct buf *b, uint32_t status, const struct reach_rec *r, uint32_t n)
{
	size_t s;
	uint32_t prev = 0;

	b->n -= HD_SEC_HDR_LEN;
	s = begin_section(b, HD_SEC_REACH);
	put32(b, status);
	put32(b, 3);          /* threads stopped */
	put64(b, 123456);     /* ns */
	put64(b, 8192);       /* root bytes */
	put64(b, 300);        /* block bytes */
	put32(b, n);
	unsigned char *p = b->b + b->n;
	for (uint32_t i = 0; i < n; i++) {
		p = hd_put_varint(p, r[i].id - prev);
		prev = r[i].id;
		for (int k = 0; k < 2 * HD_REACH_NKINDS; k++)
			p = hd_put_varint(p, r[i].v[k]);
	}
	b->n = (size_t)(p - b->b);
	end_section(b, s);
	begin_section(b, HD_SEC_END);
}

/* build()'s stacks: 0 holds 100 bytes in 1 block, 1 holds 200 in 2. */
static const struct reach_rec v1_reach[] = {
	{ 0, { 100, 1, 0, 0, 0, 0, 0, 0 } },
	{ 1, { 0, 0, 64, 1, 0, 0, 136, 1 } },
};

static void reach_reads_back_from_a_version_1_file(void)
{
	struct buf b;
	struct snapshot s;
	char why[128];

	build(&b);
	put_reach(&b, HD_REACH_DONE, v1_reach, 2);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), 0);
	ASSERT_TRUE(snapshot_classified(&s));
	ASSERT_TRUE(snapshot_reach_reason(&s, why, sizeof why) == NULL);
	ASSERT_EQ(s.reach.threads, 3);
	ASSERT_EQ(s.reach.ns, 123456);
	ASSERT_EQ(s.reach.root_bytes, 8192);
	ASSERT_EQ(s.reach.block_bytes, 300);
	ASSERT_EQ(s.reach.n, 2);
	const struct hd_reach_rec *r = snapshot_reach_of(&s, 1);
	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(r->bytes[HD_REACH_INDIRECT], 64);
	ASSERT_EQ(r->count[HD_REACH_INDIRECT], 1);
	ASSERT_EQ(r->bytes[HD_REACH_REACHABLE], 136);
	ASSERT_EQ(r->bytes[HD_REACH_DEFINITE], 0);
	ASSERT_EQ(snapshot_reach_of(&s, 0)->bytes[HD_REACH_DEFINITE], 100);
	ASSERT_TRUE(snapshot_reach_of(&s, 2) == NULL);
	ASSERT_STR(snapshot_reach_kind_name(HD_REACH_POSSIBLE), "possible");
	snapshot_release(&s);

	/* Without the section: not classified, and why. */
	build(&b);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), 0);
	ASSERT_TRUE(!snapshot_classified(&s));
	ASSERT_STR(snapshot_reach_reason(&s, why, sizeof why), "no reachability data in this snapshot (only exit snapshots have it)");
	snapshot_release(&s);
}

static void reach_with_a_status_says_why_and_holds_no_records(void)
{
	struct buf b;
	struct snapshot s;
	char why[128];

	build(&b);
	put_reach(&b, HD_REACH_UNSAFE_EXIT, NULL, 0);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), 0);
	ASSERT_TRUE(s.reach.present);
	ASSERT_TRUE(!snapshot_classified(&s));
	ASSERT_TRUE(snapshot_reach_of(&s, 0) == NULL);
	ASSERT_STR(snapshot_reach_reason(&s, why, sizeof why),
		   "the exit came through _exit (or a fatal signal), where threads cannot be stopped safely");
	snapshot_release(&s);

	build(&b);
	put_reach(&b, 99, NULL, 0);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), 0);
	ASSERT_STR(snapshot_reach_reason(&s, why, sizeof why), "reachability status 99, unknown to this heapdelta");
	snapshot_release(&s);

	/* A status that is not 0 with records is an error. */
	build(&b);
	put_reach(&b, HD_REACH_OFF, v1_reach, 2);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
}

static void reach_that_disagrees_with_the_stacks_is_an_error(void)
{
	struct buf b;
	struct snapshot s;
	struct reach_rec r[3];

	/* A stack the snapshot does not have. */
	memcpy(r, v1_reach, sizeof v1_reach);
	r[2] = (struct reach_rec){ 7, { 0, 0, 0, 0, 0, 0, 0, 0 } };
	build(&b);
	put_reach(&b, HD_REACH_DONE, r, 3);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
	/* Kinds that do not add up to the stack's bytes, or its count. */
	memcpy(r, v1_reach, sizeof v1_reach);
	r[1].v[6] = 135;
	build(&b);
	put_reach(&b, HD_REACH_DONE, r, 2);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
	memcpy(r, v1_reach, sizeof v1_reach);
	r[0].v[1] = 2;
	build(&b);
	put_reach(&b, HD_REACH_DONE, r, 2);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
	/* Kinds whose sum overflows. */
	memcpy(r, v1_reach, sizeof v1_reach);
	r[0].v[2] = UINT64_MAX;
	r[0].v[4] = 101;
	build(&b);
	put_reach(&b, HD_REACH_DONE, r, 2);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
	/* A stack with live blocks and no record. */
	build(&b);
	put_reach(&b, HD_REACH_DONE, v1_reach, 1);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
	/* Ids not increasing. */
	r[0] = v1_reach[1];
	r[1] = v1_reach[0];
	build(&b);
	put_reach(&b, HD_REACH_DONE, r, 2);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
	/* Two REACH sections. */
	build(&b);
	put_reach(&b, HD_REACH_DONE, v1_reach, 2);
	put_reach(&b, HD_REACH_DONE, v1_reach, 2);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);
	/* Every truncation is an error; every single-bit change, either. */
	build(&b);
	put_reach(&b, HD_REACH_DONE, v1_reach, 2);
	assert_truncations_refused(&b, "t");
	survive_bit_flips(&b, "t");
}

static void reach_in_a_version_2_file_is_checked_against_its_composed_stacks(void)
{
	struct buf b;
	struct snapshot s;
	/* build_v2's stacks: 3 holds 300 bytes in 2 blocks, 5 nothing. */
	const struct reach_rec r[] = { { 3, { 0, 0, 0, 0, 100, 1, 200, 1 } } };
	const struct reach_rec bad_id[] = { { 3, { 0, 0, 0, 0, 100, 1, 200, 1 } }, { 4, { 0 } } };

	build_v2(&b);
	put_reach(&b, HD_REACH_DONE, r, 1);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), 0);
	ASSERT_TRUE(snapshot_classified(&s));
	ASSERT_EQ(snapshot_reach_of(&s, 3)->bytes[HD_REACH_POSSIBLE], 100);
	ASSERT_EQ(snapshot_reach_of(&s, 3)->count[HD_REACH_REACHABLE], 1);
	snapshot_release(&s);
	build_v2(&b);
	put_reach(&b, HD_REACH_DONE, bad_id, 2);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), -1);
	snapshot_release(&s);
	/* A file with a base is partial: its REACH waits for the chain. */
	build_v2(&b);
	put_reach(&b, HD_REACH_DONE, bad_id, 2);
	hd_put_u64(b.b + 16 + 16 + 8 * HD_META_BASE_SEQ, 1);
	hd_put_u64(b.b + 16 + 16 + 8 * HD_META_SEQ, 2);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), 0);
	ASSERT_EQ(s.reach.n, 2);
	snapshot_release(&s);
	build_v2(&b);
	put_reach(&b, HD_REACH_DONE, r, 1);
	assert_truncations_refused(&b, "mem");
}

/* ---- JIT ---------------------------------------------------------------- */

/* Replace b's END section by a JIT section (a file merged by thinning: two
 * files' records, the second naming 0x7f0010 again), then END again.
 * outside: the last address lies outside its entry. */
static void put_jit(struct buf *b, int outside)
{
	size_t s;

	b->n -= HD_SEC_HDR_LEN;
	s = begin_section(b, HD_SEC_JIT);
	put32(b, 2);
	put64(b, 0x7f0000);
	put64(b, 0x100);
	putstr(b, "JS:~first /app.js:1:1");
	put32(b, 2);
	put64(b, 0x7f0010);
	put64(b, 0x7f0020);
	put64(b, 0x7f0000);
	put64(b, 0x40);
	putstr(b, "JS:*second /app.js:9:1");
	put32(b, 1);
	put64(b, outside ? 0x7f0040 : 0x7f0010);
	end_section(b, s);
	begin_section(b, HD_SEC_END);
}

static void jit_entries_name_their_addresses_the_later_record_in_force(void)
{
	struct buf b;
	struct snapshot s;

	build_v2(&b);
	put_jit(&b, 0);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), 0);
	ASSERT_EQ(s.njit, 2);
	ASSERT_STR(snapshot_jit_of(&s, 0x7f0010)->name, "JS:*second /app.js:9:1");
	ASSERT_STR(snapshot_jit_of(&s, 0x7f0020)->name, "JS:~first /app.js:1:1");
	ASSERT_EQ(snapshot_jit_of(&s, 0x7f0020)->start, 0x7f0000);
	ASSERT_TRUE(snapshot_jit_of(&s, 0x7f0030) == NULL);   /* listed by no record */
	snapshot_release(&s);
	build_v2(&b);
	put_jit(&b, 1);
	ASSERT_EQ(snapshot_parse("mem", b.b, b.n, &s), -1);   /* an address outside its entry */
	snapshot_release(&s);
	build_v2(&b);
	put_jit(&b, 0);
	assert_truncations_refused(&b, "mem");
}

static void every_truncation_is_an_error(void)
{
	struct buf b;

	build(&b);
	assert_truncations_refused(&b, "t");
}

static void every_single_byte_corruption_is_handled(void)
{
	struct buf b;
	struct snapshot s;

	build(&b);
	for (size_t i = 0; i < b.n; i++)
		for (int v = 0; v < 256; v += 51) {
			unsigned char *copy = malloc(b.n);
			memcpy(copy, b.b, b.n);
			copy[i] ^= (unsigned char)(v | 1);
			snapshot_parse("t", copy, b.n, &s);   /* either outcome; never a crash */
			snapshot_release(&s);
			free(copy);
		}
}

static void wrong_magic_future_version_and_huge_counts_are_errors(void)
{
	struct buf b;
	struct snapshot s;

	build(&b);
	b.b[0] = 'X';
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);

	build(&b);
	hd_put_u32(b.b + 8, HD_VERSION + 1);
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);

	/* The STACKS count claims far more records than the section holds. */
	build(&b);
	for (size_t i = 16; i + 16 < b.n;) {
		uint32_t tag = hd_get_u32(b.b + i);
		uint64_t len = hd_get_u64(b.b + i + 8);
		if (tag == HD_SEC_STACKS)
			hd_put_u32(b.b + i + 16, 0x7fffffff);
		i += 16 + len;
	}
	ASSERT_EQ(snapshot_parse("t", b.b, b.n, &s), -1);
	snapshot_release(&s);

	ASSERT_EQ(snapshot_parse("t", (const unsigned char *)"", 0, &s), -1);
	snapshot_release(&s);
}

/* ---- sizes ------------------------------------------------------------ */

static void sizes_format_as_tracemalloc_does(void)
{
	char b[32];

	ASSERT_STR(format_size(b, 0, 0), "0 B");
	ASSERT_STR(format_size(b, 10239, 0), "10239 B");
	ASSERT_STR(format_size(b, 10240, 0), "10.0 KiB");
	ASSERT_STR(format_size(b, 102399, 0), "100.0 KiB");
	ASSERT_STR(format_size(b, 102400, 0), "100 KiB");
	ASSERT_STR(format_size(b, 1258291, 0), "1229 KiB");
	ASSERT_STR(format_size(b, 12582912, 0), "12.0 MiB");
	ASSERT_STR(format_size(b, 1048576, 1), "+1024 KiB");
	ASSERT_STR(format_size(b, -500, 1), "-500 B");
	ASSERT_STR(format_size(b, 0, 1), "+0 B");
	ASSERT_STR(format_size(b, 1.5, 0), "2 B");
	ASSERT_STR(format_size(b, 2.5, 0), "2 B");   /* round half to even, like Python */
}

static void sizes_parse_with_binary_and_decimal_units(void)
{
	uint64_t v;

	ASSERT_EQ(parse_size("123", &v), 0); ASSERT_EQ(v, 123);
	ASSERT_EQ(parse_size("1KiB", &v), 0); ASSERT_EQ(v, 1024);
	ASSERT_EQ(parse_size("1KB", &v), 0); ASSERT_EQ(v, 1000);
	ASSERT_EQ(parse_size("2 MB", &v), 0); ASSERT_EQ(v, 2000000);
	ASSERT_EQ(parse_size("1.5MiB", &v), 0); ASSERT_EQ(v, 1572864);
	ASSERT_EQ(parse_size("3g", &v), 0); ASSERT_EQ(v, 3221225472u);
	ASSERT_EQ(parse_size("1 GB", &v), 0); ASSERT_EQ(v, 1000000000);
	ASSERT_EQ(parse_size("x", &v), -1);
	ASSERT_EQ(parse_size("1 parsec", &v), -1);
	ASSERT_EQ(parse_size("-1", &v), -1);
}

int main(void)
{
	static const struct unit_test tests[] = {
		{ "a well-formed snapshot reads back exactly", a_well_formed_snapshot_reads_back_exactly },
		{ "a version 2 snapshot without a base reads back exactly", a_version_2_snapshot_without_a_base_reads_back_exactly },
		{ "a frame names the module mapped there in its stack's epoch",
		  a_frame_names_the_module_mapped_there_in_its_stacks_epoch },
		{ "REACH reads back from a version 1 file", reach_reads_back_from_a_version_1_file },
		{ "REACH with a status says why and holds no records", reach_with_a_status_says_why_and_holds_no_records },
		{ "REACH that disagrees with the stacks is an error", reach_that_disagrees_with_the_stacks_is_an_error },
		{ "REACH in a version 2 file is checked against its composed stacks",
		  reach_in_a_version_2_file_is_checked_against_its_composed_stacks },
		{ "JIT entries name their addresses, the later record in force",
		  jit_entries_name_their_addresses_the_later_record_in_force },
		{ "every truncation is an error", every_truncation_is_an_error },
		{ "every single-byte corruption is handled", every_single_byte_corruption_is_handled },
		{ "wrong magic, future version and huge counts are errors", wrong_magic_future_version_and_huge_counts_are_errors },
		{ "sizes format as tracemalloc does", sizes_format_as_tracemalloc_does },
		{ "sizes parse with binary and decimal units", sizes_parse_with_binary_and_decimal_units },
	};
	return run_unit_tests("reader", tests, sizeof tests / sizeof tests[0]);
}
